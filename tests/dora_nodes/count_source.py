"""Tiny dora source for the deploy tests: sends 0..COUNT-1 on `number`, then reports which process ran it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
from dora import Node


def main() -> None:
    count = int(os.environ["COUNT"])
    node = Node()
    for i in range(count):
        node.send_output("number", pa.array([i]))
    # The parent is the daemon that spawned this node: the deploy test tells the machines apart by it.
    report = {"pid": os.getpid(), "parent_pid": os.getppid(), "sent": count}
    Path(os.environ["REPORT_DIR"], "source.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
