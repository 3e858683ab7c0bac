"""`make bench` starts: every benchmark's module imports and names its function, and an unknown name is refused."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.__main__ import BENCHMARKS, load


def test_every_benchmark_loads() -> None:
    for name in BENCHMARKS:
        assert callable(load(name)), name


def test_an_unknown_benchmark_is_refused_with_the_list_of_names() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "no_such_benchmark"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "unknown benchmark(s) ['no_such_benchmark']" in done.stderr
    assert "'mapping'" in done.stderr and "'landmarks'" in done.stderr
