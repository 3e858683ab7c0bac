"""Running a Beam pipeline on the DirectRunner or on Dask, for every pipeline of the project."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import apache_beam as beam

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
RUNNERS = ("direct", "dask")


@contextlib.contextmanager
def _local_dask_cluster(workers: int | None) -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=workers or os.cpu_count(),
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster.scheduler_address


def check_runner(runner: str, dask_address: str | None = None, workers: int | None = None) -> None:
    """Raise ValueError for an unknown runner, or Dask settings given to another runner."""
    if runner not in RUNNERS:
        raise ValueError(f"unknown runner {runner!r}; choose one of {', '.join(RUNNERS)}")
    if runner != "dask" and (dask_address is not None or workers is not None):
        raise ValueError("a Dask address and a worker count only apply to the dask runner")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")


def run_pipeline(
    build: Callable[[beam.Pipeline], object],
    runner: str = "direct",
    dask_address: str | None = None,
    workers: int | None = None,
) -> None:
    """Build a pipeline with `build` and run it to completion on the DirectRunner or on Dask.

    For Dask, `dask_address` is a scheduler address; without one, a local cluster of `workers`
    processes (default: one per core) is started for the run. The direct runner runs bundles on one thread: work
    that needs the cores is done in processes (ingest's staging).
    """
    # Imported here, not with this module: Beam takes half a second to import, which ingest spends staging.
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    check_runner(runner, dask_address, workers)
    if runner == "direct":
        # The in-process FnApiRunner, named: Beam's DirectRunner would first try to download the Prism runner
        # binary from the internet, and fall back to this runner only once that fails. Explicit flags:
        # PipelineOptions would otherwise parse the command line of whoever calls us.
        with beam.Pipeline(options=PipelineOptions(flags=[], runner="FnApiRunner")) as pipeline:
            build(pipeline)
        return
    with contextlib.ExitStack() as stack:
        address = dask_address or stack.enter_context(_local_dask_cluster(workers))
        # One file per Dask partition, so that files spread over the workers.
        options = PipelineOptions(
            flags=[f"--dask_client_address={address}", "--dask_partition_size=1"], runner=DASK_RUNNER
        )
        pipeline = beam.Pipeline(options=options)
        build(pipeline)
        result = pipeline.run()
        try:
            result.wait_until_finish()
        finally:
            result.client.close()
