"""The lake through polars, DuckDB and `astra sql`: read-only, the README queries' answers, training windows.

Fixture lakes are written partition by partition in the layout of schemas.lake, with known contents.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Collection, Mapping
from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from datasets.lake import EXAMPLE_QUERIES, TABLE_MAX_CELL, TABLE_MAX_ROWS, Lake, LakeError, run_query
from datasets.lake_tables import write_partition
from datasets.windows import IMAGE_TOPICS, STREAMS, EpisodeWindows
from schemas.lake import OUTCOME_OK, TABLE_VERSIONS
from schemas.topics import BY_OUTPUT, CAMERAS
from tests.test_ingest import WINDOW_GAPS_QUERY

T0 = 1_700_000_000_000_000_000  # 2023-11-14 22:13:20 UTC
S = 1_000_000_000
FRONT = IMAGE_TOPICS[0]


@cache
def _jpeg(level: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), (level, level, level)).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _level(frame: int) -> int:
    """Gray level of camera frame number `frame`: neighbours differ by 20, so a wrong pick shows."""
    return 20 + (frame * 20) % 220


def _times(start_ns: int, seconds: float, hz: float, offset_ns: int = 0) -> np.ndarray:
    return start_ns + offset_ns + np.round(np.arange(int(seconds * hz) + 1) * 1e9 / hz).astype(np.int64)


def write_episode(
    lake: Path,
    episode_id: str,
    start_ns: int,
    seconds: float,
    *,
    robot_id: str = "r1",
    site: str = "office-0",
    distance_m: float = 1.0,
    collisions: int = 0,
    rates_hz: Mapping[str, float] | None = None,
    offsets_ns: Mapping[str, int] | None = None,
    dropped_front_frames: Collection[int] = (),
    leave_out: Collection[str] = (),
) -> dict[str, np.ndarray]:
    """Write one episode; every stream value is its message's time in seconds since `start_ns`.

    Streams run at their nominal rate unless `rates_hz` says otherwise, starting `offsets_ns` after
    `start_ns`. Camera frame j shows gray level _level(j). Returns each topic's message times.
    """

    def times(output_id: str) -> np.ndarray:
        rate = (rates_hz or {}).get(output_id, BY_OUTPUT[output_id].rate_hz)
        return _times(start_ns, seconds, rate, (offsets_ns or {}).get(output_id, 0))

    written: dict[str, np.ndarray] = {}
    by_table: dict[str, list[pl.DataFrame]] = {}
    for output_id in ("imu", "wheels", "odom", "ground_truth", "cmd_vel", "expert_cmd_vel"):
        if output_id in leave_out:
            continue
        t = written[BY_OUTPUT[output_id].ros_topic] = times(output_id)
        seconds_since = (t - start_ns) / 1e9
        table = STREAMS[output_id].table
        columns = {"t_ns": t, "topic": [BY_OUTPUT[output_id].ros_topic] * len(t)}
        if table == "wheels":
            pair = [[v, v] for v in seconds_since]
            columns |= {"name": [["left_wheel", "right_wheel"]] * len(t), "position": pair, "velocity": pair}
        else:
            columns |= {expr.meta.output_name(): seconds_since for expr in STREAMS[output_id].values}
        by_table.setdefault(table, []).append(pl.DataFrame(columns))
    frames = []
    for camera, camera_topic in zip(CAMERAS, IMAGE_TOPICS, strict=True):
        t = times(f"image_{camera}")
        keep = [j for j in range(len(t)) if not (camera_topic == FRONT and j in dropped_front_frames)]
        written[camera_topic] = t[keep]
        frames.append(
            pl.DataFrame(
                {"t_ns": t[keep], "topic": [camera_topic] * len(keep), "format": ["jpeg"] * len(keep)}
            ).with_columns(data=pl.Series([_jpeg(_level(j)) for j in keep], dtype=pl.Binary))
        )
    by_table["images"] = frames
    versions = {
        table: write_partition(lake, table, episode_id, pl.concat(parts, how="diagonal").to_dict(as_series=False))
        for table, parts in by_table.items()
    }
    write_partition(
        lake,
        "episodes",
        episode_id,
        {
            "robot_id": [robot_id],
            "site": [site],
            "t_ns": [start_ns],
            "start_ns": [start_ns],
            "end_ns": [start_ns + int(seconds * S)],
            "duration_s": [seconds],
            "distance_m": [distance_m],
            "collisions": [collisions],
            "outcome": [OUTCOME_OK],
            "metadata": [[("camera_width", "8")]],
            TABLE_VERSIONS.name: [list(versions.items())],  # as ingest records them: what time travel reads
        },
    )
    return written


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three episodes with known answers to the README queries."""
    path = tmp_path_factory.mktemp("lake")
    write_episode(path, "ep-a", T0, 10, distance_m=8.0, collisions=2, dropped_front_frames=(40, 41))
    write_episode(path, "ep-b", T0 + 3600 * S, 20, distance_m=4.0, rates_hz={"imu": 50.0})
    write_episode(path, "ep-c", T0 + 86400 * S, 10, robot_id="r2", site="warehouse-1", distance_m=12.0, collisions=1)
    (path / "_quarantine" / "bad").mkdir(parents=True)
    (path / "_staging").mkdir(exist_ok=True)
    return path


def _tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + file.read_bytes())
    return digest.hexdigest()


# --- Lake: tables, columns, polars and DuckDB agree ---------------------------------------------------------------


def test_tables_and_columns(lake: Path) -> None:
    db = Lake(lake)
    assert db.tables() == ["commands", "episodes", "images", "imu", "odometry", "wheels"]
    columns = db.columns("imu")
    assert list(columns)[:2] == ["t_ns", "topic"] and list(columns)[-3:] == ["episode_id", "site", "day"]
    assert columns["linear_acceleration_x"] == "DOUBLE" and columns["episode_id"] == "VARCHAR"
    assert columns["day"] == "DATE"
    assert db.columns("episodes")["message_counts"] == "MAP(VARCHAR, BIGINT)"
    assert list(columns) == db.table("imu").collect_schema().names()


def test_polars_and_duckdb_agree(lake: Path) -> None:
    db = Lake(lake)
    query = "SELECT episode_id, count(*) AS n, max(t_ns) AS t, avg(linear_acceleration_x) AS a FROM imu GROUP BY ALL"
    polars = (
        db.table("imu")
        .group_by("episode_id")
        .agg(n=pl.len(), t=pl.col("t_ns").max(), a=pl.col("linear_acceleration_x").mean())
        .sort("episode_id")
        .collect()
    )
    via_sql = db.sql(query).sort("episode_id")
    via_connection = db.connect().sql(query).pl().sort("episode_id")
    assert polars["n"].to_list() == via_sql["n"].to_list() == via_connection["n"].to_list() == [1001, 1001, 1001]
    assert polars["t"].to_list() == via_sql["t"].to_list() == via_connection["t"].to_list()
    np.testing.assert_allclose(polars["a"].to_numpy(), via_sql["a"].to_numpy())
    assert db.sql("SELECT metadata FROM episodes WHERE episode_id = 'ep-a'").item() == {"camera_width": "8"}


def test_new_episodes_show_up_in_a_lake_opened_after_them(tmp_path: Path) -> None:
    write_partition(tmp_path, "imu", "a", {"t_ns": [1, 2], "topic": ["/imu"] * 2})
    db = Lake(tmp_path)
    assert db.sql("SELECT count(*) FROM imu").item() == 2
    write_partition(tmp_path, "imu", "b", {"t_ns": [3], "topic": ["/imu"]})
    assert Lake(tmp_path).sql("SELECT count(*) FROM imu").item() == Lake(tmp_path).table("imu").collect().height == 3
    # A Lake reads the version it opened: one query's tables never disagree with another's.
    assert db.sql("SELECT count(*) FROM imu").item() == db.table("imu").collect().height == 2


def test_missing_empty_and_unknown(tmp_path: Path, lake: Path) -> None:
    with pytest.raises(LakeError, match="no lake at"):
        Lake(tmp_path / "nowhere")
    (tmp_path / "_quarantine" / "x").mkdir(parents=True)
    (tmp_path / "imu").mkdir()
    with pytest.raises(LakeError, match="no tables yet"):
        Lake(tmp_path)
    with pytest.raises(LakeError, match=r"no table 'imus'.*tables: commands, episodes, images, imu"):
        Lake(lake).table("imus")
    with pytest.raises(LakeError, match="no table 'imus'"):
        Lake(lake).columns("imus")


# --- read-only -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "CREATE TABLE t AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "CREATE OR REPLACE VIEW imu AS SELECT 1",
        "INSERT INTO imu (t_ns) VALUES (1)",
        "UPDATE imu SET t_ns = 0",
        "DELETE FROM imu",
        "DROP VIEW imu",
        "ALTER VIEW imu RENAME TO imu2",
        "COPY imu TO '{lake}/imu/_delta_log/00000000000000000009.json' (FORMAT csv)",  # a forged commit
        "COPY (SELECT 1) TO '{lake}/x.csv'",
        "EXPORT DATABASE '{lake}/export'",
        "ATTACH '{lake}/x.duckdb' AS x",
        "DETACH memory",
        "PRAGMA enable_profiling",
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "INSTALL httpfs",
        "LOAD httpfs",
        "CALL checkpoint()",
        "CHECKPOINT",
        "BEGIN TRANSACTION",
        "CREATE MACRO m() AS 1",
        "SELECT 1; DROP VIEW imu",
    ],
)
def test_read_only_refuses(lake: Path, query: str) -> None:
    before = _tree_digest(lake)
    with pytest.raises(LakeError, match=r"read-only|one SQL statement"):
        Lake(lake).sql(query.format(lake=lake))
    assert _tree_digest(lake) == before


def test_connection_reads_the_lake_and_nothing_else(lake: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with pytest.raises(LakeError, match="Permission Error"):
        Lake(lake).sql(f"SELECT * FROM read_csv('{secret}')")
    con = Lake(lake).connect()
    assert con.sql(f"SELECT count(*) FROM read_parquet('{lake}/imu/**/*.parquet')").fetchall() == [(3003,)]
    for statement in (
        f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'",
        f"SELECT * FROM read_text('{secret}')",
        f"ATTACH '{tmp_path / 'x.duckdb'}'",
    ):
        with pytest.raises(duckdb.PermissionException):
            con.execute(statement)
    with pytest.raises(duckdb.InvalidInputException, match="locked"):
        con.execute("SET enable_external_access = true")
    assert not (tmp_path / "out.csv").exists()


def test_select_like_statements_run(lake: Path) -> None:
    db = Lake(lake)
    assert db.sql("SHOW TABLES")["name"].to_list() == db.tables()
    assert db.sql("DESCRIBE imu")["column_name"].to_list() == list(db.columns("imu"))
    assert db.sql("SUMMARIZE episodes").height == len(db.columns("episodes"))
    assert db.sql("FROM episodes SELECT count(*) AS n;").item() == 3  # FROM-first, a trailing semicolon


def test_sql_errors_list_tables_and_columns(lake: Path) -> None:
    for query in ("SELECT nope FROM imu", "SELECT * FROM imus", "SELEC 1", "SELECT 'x'::INT"):
        with pytest.raises(LakeError) as error:
            Lake(lake).sql(query)
        message = str(error.value)
        assert f"tables in {lake.resolve()} (version " in message
        assert "  imu: t_ns BIGINT, topic VARCHAR," in message
        assert "  episodes: source_path VARCHAR," in message and "episode_id VARCHAR" in message


# --- run_query formats ----------------------------------------------------------------------------------------------


def test_json_format(lake: Path) -> None:
    query = (
        "SELECT episode_id, duration_s, metadata, [1.5, 'nan'::DOUBLE] AS xs, '\\xAA\\x00'::BLOB AS raw, "
        "make_timestamp_ns(start_ns) AS start, NULL AS nothing FROM episodes ORDER BY episode_id"
    )
    rows = json.loads(run_query(lake, query, "json"))
    assert [r["episode_id"] for r in rows] == ["ep-a", "ep-b", "ep-c"]
    assert rows[1] == {
        "episode_id": "ep-b",
        "duration_s": 20.0,
        "metadata": {"camera_width": "8"},
        "xs": [1.5, None],
        "raw": "qgA=",  # base64
        "start": "2023-11-14T23:13:20",
        "nothing": None,
    }
    assert json.loads(run_query(lake, "SELECT 1 AS x WHERE false", "json")) == []


def test_csv_format(lake: Path) -> None:
    text = run_query(lake, "SELECT episode_id, collisions, metadata, NULL AS n FROM episodes ORDER BY 1", "csv")
    assert list(csv.reader(io.StringIO(text))) == [
        ["episode_id", "collisions", "metadata", "n"],
        ["ep-a", "2", '{"camera_width": "8"}', ""],
        ["ep-b", "0", '{"camera_width": "8"}', ""],
        ["ep-c", "1", '{"camera_width": "8"}', ""],
    ]


def test_table_format(lake: Path) -> None:
    text = run_query(
        lake,
        f"SELECT episode_id, t_ns, repeat('x', {TABLE_MAX_CELL + 10}) AS long, data FROM images "
        f"WHERE topic = '{FRONT}' ORDER BY t_ns LIMIT 1",
    )
    lines = text.splitlines()
    assert lines[0].split() == ["episode_id", "t_ns", "long", "data"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].startswith("ep-a") and f"<{len(_jpeg(_level(0)))} bytes>" in lines[2]
    assert "x" * (TABLE_MAX_CELL - 1) + "…" in lines[2] and "x" * TABLE_MAX_CELL not in lines[2]
    assert lines[-1] == "(1 row)"
    assert len({line.index("<") for line in lines[2:-1]}) == 1

    numbers = run_query(lake, "SELECT range AS n FROM range(8, 12)").splitlines()
    assert numbers[2:-1] == [" 8", " 9", "10", "11"]  # numbers align right
    many = run_query(lake, f"SELECT * FROM range({TABLE_MAX_ROWS + 50})").splitlines()
    assert len(many) == 2 + TABLE_MAX_ROWS + 1 and many[-1].startswith(f"(first {TABLE_MAX_ROWS} rows shown")


def test_run_query_errors(lake: Path, tmp_path: Path) -> None:
    with pytest.raises(LakeError, match="unknown format"):
        run_query(lake, "SELECT 1", "xml")  # type: ignore[arg-type]
    with pytest.raises(LakeError, match="read-only"):
        run_query(lake, "DROP VIEW imu", "csv")
    with pytest.raises(LakeError, match="no lake at"):
        run_query(tmp_path / "none", "SELECT 1")


# --- the README queries -------------------------------------------------------------------------------------------


def _example(lake: Path, title_start: str) -> list[dict]:
    title = next(t for t in EXAMPLE_QUERIES if t.startswith(title_start))
    return Lake(lake).sql(EXAMPLE_QUERIES[title]).to_dicts()


def test_example_imu_rate(lake: Path) -> None:
    assert _example(lake, "IMU rate") == [
        {"episode_id": "ep-b", "samples": 1001, "rate_hz": 50.0},
        {"episode_id": "ep-a", "samples": 1001, "rate_hz": 100.0},
        {"episode_id": "ep-c", "samples": 1001, "rate_hz": 100.0},
    ]


def test_example_collisions_per_site(lake: Path) -> None:
    assert _example(lake, "Collisions per site") == [
        {"site": "office-0", "episodes": 2, "collisions": 2, "distance_m": 12.0, "collisions_per_100m": 16.67},
        {"site": "warehouse-1", "episodes": 1, "collisions": 1, "distance_m": 12.0, "collisions_per_100m": 8.33},
    ]


def test_example_distance_per_robot_per_day(lake: Path) -> None:
    assert _example(lake, "Distance per robot per day") == [
        {"robot_id": "r1", "day": dt.date(2023, 11, 14), "episodes": 2, "distance_m": 12.0},
        {"robot_id": "r2", "day": dt.date(2023, 11, 15), "episodes": 1, "distance_m": 12.0},
    ]


def test_example_camera_gaps(lake: Path) -> None:
    # ep-a's front camera lost frames 40 and 41: frame 42 comes 300 ms after frame 39.
    assert _example(lake, "Gaps in camera frames") == [
        {"episode_id": "ep-a", "topic": FRONT, "t_ns": T0 + 4_200_000_000, "gap_ms": 300.0}
    ]
    assert Lake(lake).sql(WINDOW_GAPS_QUERY).to_dicts() == _example(lake, "Gaps in camera frames")


def test_example_slowest_episodes(lake: Path) -> None:
    rows = _example(lake, "Slowest episodes")
    assert [(r["episode_id"], r["mean_speed_mps"]) for r in rows] == [("ep-b", 0.2), ("ep-a", 0.8), ("ep-c", 1.2)]


# --- EpisodeWindows -------------------------------------------------------------------------------------------------

# Every stream starts at its own offset; imu's 5 ms puts grid times exactly between two samples.
OFFSETS_NS = {
    "imu": 5_000_000,
    "wheels": 7_000_000,
    "odom": 1_000_000,
    "ground_truth": 11_000_000,
    "cmd_vel": 3_000_000,
    "expert_cmd_vel": 13_000_000,
    "image_front": 20_000_000,
    "image_rear_left": 40_000_000,
    "image_rear_right": 60_000_000,
}


@pytest.fixture(scope="module")
def windows_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("windows")
    times = write_episode(path, "w1", T0, 6, offsets_ns=OFFSETS_NS, dropped_front_frames=(15,))
    write_episode(path, "w2", T0 + 100 * S, 6, robot_id="r2", offsets_ns=OFFSETS_NS)
    write_episode(path, "w3-no-commands", T0 + 200 * S, 6, leave_out=("cmd_vel",))
    return path, times


def _nearest_brute_force(t_ns: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.array([t_ns[np.argmin(np.abs(t_ns - target))] for target in targets])  # first minimum: the earlier


def test_windows_index(windows_lake: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = windows_lake
    windows = EpisodeWindows(Lake(path), window_s=2.0, stride_s=1.0, keyframes=4)
    # All streams and cameras cover [T0 + 60 ms (last camera starts), T0 + 6.001 s (odom ends)].
    assert windows.episode_ids == ["w1", "w2"]  # w3 has no /cmd_vel
    assert len(windows) == 8
    assert [int(windows[i]["t0_ns"]) - T0 for i in range(4)] == [60_000_000 + k * S for k in range(4)]
    only_r2 = EpisodeWindows(Lake(path), episodes="robot_id = 'r2'")
    assert only_r2.episode_ids == ["w2"] and len(only_r2) == 4
    with pytest.raises(LakeError, match="one SQL statement"):
        EpisodeWindows(Lake(path), episodes="true; DROP VIEW imu")


def test_windows_name_the_lake_version_that_gives_them_again(tmp_path: Path) -> None:
    """A training set records the lake version it read: after more episodes land, that version reads the same."""
    write_episode(tmp_path, "w1", T0, 4)
    first = EpisodeWindows(Lake(tmp_path))
    write_episode(tmp_path, "w2", T0 + 100 * S, 4)
    latest = EpisodeWindows(Lake(tmp_path))
    again = EpisodeWindows(Lake(tmp_path, version=first.lake_version))
    assert first.lake_version is not None and latest.lake_version > first.lake_version
    assert again.lake_version == first.lake_version
    assert again.episode_ids == first.episode_ids == ["w1"] and latest.episode_ids == ["w1", "w2"]
    assert len(again) == len(first) and int(again[len(again) - 1]["t0_ns"]) == int(first[len(first) - 1]["t0_ns"])


def test_windows_alignment(windows_lake: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, times = windows_lake
    windows = EpisodeWindows(Lake(path), window_s=2.0, stride_s=1.0, keyframes=4)
    item = windows[1]
    t0 = T0 + 1_060_000_000
    assert item["episode_id"] == "w1" and int(item["t0_ns"]) == t0
    keyframes = t0 + np.arange(4) * 500_000_000
    np.testing.assert_array_equal(item["keyframe_t_ns"].numpy(), keyframes)

    for name, stream in STREAMS.items():
        grid = t0 + np.round(np.arange(int(2 * stream.rate_hz)) * 1e9 / stream.rate_hz).astype(np.int64)
        expected = _nearest_brute_force(times[stream.topic], grid)
        np.testing.assert_array_equal(item[f"{name}_t_ns"].numpy(), expected, err_msg=name)
        assert item[name].shape == (len(grid), len(stream.values)) and item[name].dtype.is_floating_point
        np.testing.assert_allclose(
            item[name].numpy(), np.repeat(((expected - T0) / 1e9)[:, None], len(stream.values), 1), rtol=1e-6
        )
    # Ties go to the earlier sample: grid time 1.060 s lies between imu samples at 1.055 and 1.065 s.
    assert int(item["imu_t_ns"][0]) == T0 + 1_055_000_000

    assert item["images"].shape == (4, 3, 3, 6, 8) and str(item["images"].dtype) == "torch.uint8"
    for c, (camera, topic) in enumerate(zip(CAMERAS, IMAGE_TOPICS, strict=True)):
        expected = _nearest_brute_force(times[topic], keyframes)
        np.testing.assert_array_equal(item["image_t_ns"][:, c].numpy(), expected)
        frame_numbers = (expected - T0 - OFFSETS_NS[f"image_{camera}"]) // 100_000_000
        levels = item["images"][:, c].float().mean(dim=(1, 2, 3)).numpy()
        np.testing.assert_allclose(levels, [_level(j) for j in frame_numbers], atol=3)
    # Front frame 15 (1.52 s) was dropped: keyframe 1.56 s gets frame 16 (1.62 s), not frame 14 (1.42 s).
    assert int(item["image_t_ns"][1, 0]) == T0 + 1_620_000_000


def test_windows_batch(windows_lake: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = windows_lake
    batch = next(iter(DataLoader(EpisodeWindows(Lake(path), keyframes=2), batch_size=3)))
    assert batch["episode_id"] == ["w1", "w1", "w1"]
    assert batch["images"].shape == (3, 2, 3, 3, 6, 8)
    assert batch["imu"].shape == (3, 200, 6) and batch["wheels"].shape == (3, 100, 4)
    assert batch["expert_cmd_vel"].shape == (3, 40, 2) and batch["ground_truth"].shape == (3, 100, 7)


# --- a real recording, ingested -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded_lake(office_world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An 8 s `astra record` of the office, ingested by pipelines.ingest; with the recorder's summary."""
    from pipelines.ingest import ingest

    root = tmp_path_factory.mktemp("recorded")
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(
        [str(bin_dir / "astra"), "record", "--world", str(office_world), "--seconds", "8",
         "--camera-width", "96", "--camera-height", "72", "--out", str(root / "logs")],
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ingest([root / "logs"], root / "lake", progress=False)
    return root / "lake", json.loads(proc.stdout.strip().splitlines()[-1])["summaries"][0]


def test_recorded_episode_queries(recorded_lake: tuple[Path, dict]) -> None:
    path, recorded = recorded_lake
    db = Lake(path)
    episode = db.sql("SELECT * FROM episodes").row(0, named=True)
    (imu,) = _example(path, "IMU rate")
    assert imu["episode_id"] == episode["episode_id"] and abs(imu["rate_hz"] - 100.0) < 0.5
    assert imu["samples"] == episode["message_counts"]["/imu"] == recorded["topics"]["/imu"]["count"]
    (site,) = _example(path, "Collisions per site")
    assert (site["site"], site["episodes"], site["collisions"]) == ("office-0", 1, recorded["collisions"])
    (day,) = _example(path, "Distance per robot per day")
    start = dt.datetime.fromtimestamp(episode["start_ns"] / 1e9, dt.UTC).date()
    assert (day["robot_id"], day["day"]) == ("astra-sim-01", start)
    assert day["distance_m"] == pytest.approx(recorded["distance_m"], abs=0.05)
    gaps = (
        db.table("images")
        .with_columns(gap_ms=pl.col("t_ns").diff().over("episode_id", "topic", order_by="t_ns") / 1e6)
        .filter(pl.col("gap_ms") > 150)
        .select("episode_id", "topic", "t_ns", "gap_ms")
        .collect()
    )
    assert (
        _example(path, "Gaps in camera frames")
        == gaps.sort("gap_ms", "episode_id", "topic", descending=[True, False, False]).to_dicts()
    )
    (slowest,) = _example(path, "Slowest episodes")
    assert slowest["mean_speed_mps"] == pytest.approx(recorded["distance_m"] / recorded["duration_s"], abs=2e-3)


def test_recorded_episode_windows(recorded_lake: tuple[Path, dict]) -> None:
    lake = Lake(recorded_lake[0])
    windows = EpisodeWindows(lake, window_s=2.0, stride_s=1.0, keyframes=4)
    # Every 1 s, a 2 s window that all streams cover: the sensors start at once, the expert's commands once it
    # has planned its tour, and the recording ends with the sensors.
    (start_ns, end_ns) = lake.sql(
        "SELECT (SELECT min(t_ns) FROM commands WHERE topic = '/expert/cmd_vel'), (SELECT max(t_ns) FROM imu)"
    ).row(0)
    assert start_ns - lake.sql("SELECT min(t_ns) FROM imu").item() < 2e9
    assert len(windows) == int((end_ns - start_ns) / 1e9 - 2.0) + 1
    item = windows[len(windows) - 1]
    assert item["images"].shape == (4, 3, 3, 72, 96) and item["images"].float().std() > 1  # real pictures
    grid = item["t0_ns"] + torch.arange(200) * 10_000_000
    assert (item["imu_t_ns"] - grid).abs().max() <= 5_000_000
    assert (item["image_t_ns"] - item["keyframe_t_ns"][:, None]).abs().max() <= 50_000_000
    assert item["imu"][:, 5].mean() == pytest.approx(9.81, abs=0.3)  # gravity on the accelerometer's z


def test_astra_sql_cli(recorded_lake: tuple[Path, dict]) -> None:
    path, recorded = recorded_lake
    astra = str(Path(sys.executable).parent / "astra")
    ok = subprocess.run(
        [astra, "sql", "SELECT count(*) AS n FROM imu", "--lake", str(path), "--format", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0 and json.loads(ok.stdout) == [{"n": recorded["topics"]["/imu"]["count"]}]
    refused = subprocess.run([astra, "sql", "DROP VIEW imu", "--lake", str(path)], capture_output=True, text=True)
    assert refused.returncode == 2 and "read-only" in refused.stderr


def test_readme_shows_the_tested_example_queries() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for title, query in EXAMPLE_QUERIES.items():
        assert query.strip() in readme, f"README is missing the tested query {title!r}"
