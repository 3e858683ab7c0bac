"""`astra ingest`: robot logs into the Delta Lake tables of the lake (`schemas.lake`), as one Apache Beam pipeline
(`pipelines.ingest_steps`): logs are listed (`datasets.log_files`: MCAP, also compressed whole, rosbag2 SQLite
files and directories, ROS 1 bags), staged as Parquet in bounded batches (`pipelines.staging`), and committed in
batches of episodes; once published, tables with many small files are compacted (`datasets.lake_tables.compact`).

On the direct runner, the staging processes are forked before Beam is imported, and stage the first logs while it
loads and the pipeline is built: that is half of the fixed cost of a run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datasets.lake_tables import AUTO_COMPACT_SMALL_FILES, check_columns, check_layout, compact, lake_version
from datasets.log_files import list_logs, log_members
from pipelines.progress import marker_progress
from pipelines.runner import check_runner, run_pipeline
from pipelines.staging import BatchBounds, StagingRun, staging_processes
from schemas.lake import OUTCOME_OK, STAGING_DIR

_PROGRESS_DIR, _REPORTS_DIR = "progress", "reports"


@dataclass
class IngestSummary:
    """What one `ingest` did. `quarantined` lists the logs that went to `_quarantine`; `skipped` maps every input
    file or log not ingested to the reason: unsupported format, empty, duplicate content, or already in the lake."""

    lake: str
    runner: str
    files: int  # logs read: files, and rosbag2 directories
    bytes: int
    episodes: int  # newly published
    skipped: dict[str, str]
    rows: dict[str, int]
    quarantined: list[str]
    lake_version: int | None  # of the lake once published, None if it has no episodes yet
    compacted: list[str]  # tables compacted after publishing, as small files had piled up
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def _remove_abandoned_staging(staging: Path) -> None:
    """Remove what killed ingests on this host left in staging: run folders whose process is gone."""
    host = socket.gethostname()
    for run in staging.glob(f"{host}-*-*"):
        pid = run.name.removeprefix(f"{host}-").split("-")[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(run, ignore_errors=True)
        except (ValueError, PermissionError):  # not a run folder of ours, or another user's live process
            continue


def ingest(
    paths: list[Path],
    lake: Path,
    runner: str = "direct",
    dask_address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    bounds: BatchBounds = BatchBounds(),
) -> IngestSummary:
    """Ingest logs, and the logs under directories (see `datasets.log_files`), into the lake at `lake`.

    Raises FileNotFoundError for a path that does not exist, ValueError for bad runner settings and LakeError
    (a ValueError) for a lake in the layout before Delta Lake, which `astra lake migrate` converts;
    damaged files never raise (see `IngestSummary.quarantined`). On a remote Dask cluster the inputs
    and the lake must be on a filesystem every worker sees at the same paths.
    """
    started = time.perf_counter()
    check_runner(runner, dask_address, workers)
    lake = Path(lake).resolve()
    if lake.is_dir():
        check_layout(lake)
        check_columns(lake)
    listing = list_logs(paths)
    files = [str(p) for p in listing.logs]
    total_bytes = sum(os.path.getsize(m) for f in files for m in log_members(Path(f)))
    _remove_abandoned_staging(lake / STAGING_DIR)
    staging = lake / STAGING_DIR / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    progress_dir, reports_dir = staging / _PROGRESS_DIR, staging / _REPORTS_DIR
    progress_dir.mkdir(parents=True)
    reports_dir.mkdir()
    run = StagingRun(str(lake), str(staging), bounds, str(progress_dir))
    cores = os.cpu_count() or 1
    try:
        with (
            staging_processes(min(cores, len(files)) if runner == "direct" else 0, files, run),
            marker_progress(
                progress_dir,
                total_bytes,
                "ingest",
                progress,
                weight=lambda m: int(m.read_text()),
                unit="B",
                unit_scale=True,
            ),
        ):
            from pipelines.ingest_steps import build_ingest  # Beam loads here, while the processes stage

            run_pipeline(lambda p: build_ingest(p, files, run, reports_dir), runner, dask_address, workers)
        reports = [json.loads(p.read_text()) for p in sorted(reports_dir.glob("*.json"))]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    compacted = compact(lake, AUTO_COMPACT_SMALL_FILES) if reports else {}
    rows: Counter[str] = Counter()
    skipped = dict(listing.skipped)
    for report in reports:
        rows.update(report["rows"])
        skipped.update(
            dict.fromkeys(report["duplicates"], f"duplicate content: the same bytes as {report['source_path']}")
        )
    published = {r["source_path"] for r in reports}
    skipped.update({f: "already in the lake" for f in files if f not in published and f not in skipped})
    return IngestSummary(
        lake=str(lake),
        runner=runner,
        files=len(files),
        bytes=total_bytes,
        episodes=len(reports),
        skipped=dict(sorted(skipped.items())),
        rows=dict(sorted(rows.items())),
        quarantined=sorted(r["source_path"] for r in reports if r["outcome"] != OUTCOME_OK),
        lake_version=lake_version(lake),
        compacted=sorted(compacted),
        seconds=time.perf_counter() - started,
    )
