"""A progress bar for Beam pipelines on any runner: workers drop marker files, the driver follows them."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from tqdm import tqdm


@contextlib.contextmanager
def marker_progress(
    progress_dir: Path,
    total: int,
    desc: str,
    enabled: bool = True,
    weight: Callable[[Path], int] = lambda _marker: 1,
    unit: str = "step",
    unit_scale: bool = False,
) -> Iterator[None]:
    """A tqdm bar on stderr that advances by `weight(marker)` for each new file in `progress_dir`.

    Markers whose names start with a dot are still being written and are not counted; one named `total+N...` adds N
    to the total instead, for work that is known only once the pipeline runs. When the pipeline finishes, the bar is
    filled: work the pipeline skipped is done as well.
    """
    bar = tqdm(total=total, unit=unit, unit_scale=unit_scale, desc=desc, file=sys.stderr, disable=not enabled)
    seen: set[str] = set()
    stop = threading.Event()

    def catch_up() -> None:
        for marker in progress_dir.glob("[!.]*"):
            if marker.name not in seen:
                seen.add(marker.name)
                if marker.name.startswith("total+"):
                    bar.total += int(marker.name.removeprefix("total+").split("-", 1)[0])
                    bar.refresh()
                else:
                    bar.update(weight(marker))

    def follow() -> None:
        while not stop.wait(0.2):
            catch_up()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    finished = False
    try:
        yield
        finished = True
    finally:
        stop.set()
        thread.join()
        catch_up()
        if finished:
            bar.update(bar.total - bar.n)
        bar.close()
