"""Others' MCAP files: every one of the 416 MCAP conformance files lands in the lake with exactly
the messages, attachments, metadata and channels its expected `.json` lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from deltalake import DeltaTable

from pipelines.ingest import ingest

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "external" / "mcap-conformance"
FILES = sorted(CONFORMANCE.rglob("*.mcap"))

pytestmark = pytest.mark.skipif(not FILES, reason=f"no conformance files under {CONFORMANCE}")

LakeRows = dict[str, dict[str, list[tuple]]]  # table -> episode_id -> rows in file order


@pytest.fixture(scope="session")
def conformance_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], LakeRows]:
    """All 416 files ingested in one pipeline run: source path -> episode id, and the lake's rows."""
    lake = tmp_path_factory.mktemp("conformance") / "lake"
    summary = ingest([CONFORMANCE], lake, progress=False)
    assert (summary.files, summary.episodes, summary.quarantined) == (len(FILES), len(FILES), [])
    con = duckdb.connect()

    def rows(table: str, columns: str) -> dict[str, list[tuple]]:
        if not (lake / table).is_dir():
            return {}
        found: dict[str, list[tuple]] = {}
        files = DeltaTable(lake / table).file_uris()  # an episode's rows are in one file, in order, compacted or not
        for episode_id, *row in con.sql(
            f"SELECT episode_id, {columns} FROM read_parquet({files}, filename=true, file_row_number=true) "
            "ORDER BY episode_id, filename, file_row_number"
        ).fetchall():
            found.setdefault(episode_id, []).append(tuple(row))
        return found

    episodes = {path: episode_id for episode_id, [(path,)] in rows("episodes", "source_path").items()}
    return episodes, {
        "messages": rows("messages", "topic, channel_id, sequence, t_ns, publish_time_ns, data"),
        "attachments": rows("attachments", "name, media_type, create_time_ns, t_ns, data"),
        "metadata": rows("metadata", "name, map_entries(metadata)"),
        "channels": rows(
            "channels",
            "channel_id, topic, message_encoding, map_entries(metadata), schema_id, "
            "schema_name, schema_encoding, schema_data",
        ),
    }


def _entries(mapping: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(mapping.items())]


def _data(fields: dict[str, Any]) -> bytes:
    return bytes(int(b) for b in fields["data"])


def expected_rows(mcap: Path) -> dict[str, list[tuple]]:
    """What a correct reader must produce, from the file's `.json` (integers and bytes are strings)."""
    records = [(r["type"], dict(r["fields"])) for r in json.loads(mcap.with_suffix(".json").read_text())["records"]]
    schemas = {int(f["id"]): f for kind, f in records if kind == "Schema"}
    channels = {int(f["id"]): f for kind, f in records if kind == "Channel"}
    expected: dict[str, list[Any]] = {
        "messages": [
            (
                channels[int(f["channel_id"])]["topic"],
                int(f["channel_id"]),
                int(f["sequence"]),
                int(f["log_time"]),
                int(f["publish_time"]),
                _data(f),
            )
            for kind, f in records
            if kind == "Message"
        ],
        "attachments": [
            (f["name"], f["media_type"], int(f["create_time"]), int(f["log_time"]), _data(f))
            for kind, f in records
            if kind == "Attachment"
        ],
        "metadata": [(f["name"], _entries(f["metadata"])) for kind, f in records if kind == "Metadata"],
        "channels": [],
    }
    for channel_id, f in sorted(channels.items()):
        schema = schemas.get(int(f["schema_id"]))
        expected["channels"].append(
            (
                channel_id,
                f["topic"],
                f["message_encoding"],
                _entries(f["metadata"]),
                int(f["schema_id"]),
                *((schema["name"], schema["encoding"], _data(schema)) if schema else (None, None, None)),
            )
        )
    return expected


@pytest.mark.parametrize("mcap", FILES, ids=lambda p: p.stem)
def test_file_lands_as_its_expected_records(mcap: Path, conformance_lake: tuple[dict[str, str], LakeRows]) -> None:
    episodes, lake_rows = conformance_lake
    episode_id = episodes[str(mcap.resolve())]
    for table, rows in expected_rows(mcap).items():
        landed = lake_rows[table].get(episode_id, [])
        if table == "channels":
            landed = sorted(landed, key=lambda row: row[0])
        assert landed == rows, table
