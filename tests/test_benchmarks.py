"""`make bench` starts: every benchmark module imports, and an unknown name is refused with the list of names."""

from __future__ import annotations

import subprocess
import sys


def test_every_benchmark_imports_and_an_unknown_one_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "no_such_benchmark"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr
    assert "unknown benchmark(s) ['no_such_benchmark']" in done.stderr
    assert "'mapping'" in done.stderr and "'landmarks'" in done.stderr
