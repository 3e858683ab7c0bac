"""Tiny dora sink for the deploy tests: collects every `number` until its input closes, then reports them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dora import Node


def main() -> None:
    received = []
    for event in Node():
        if event["type"] == "INPUT" and event["id"] == "number":
            received.extend(event["value"].to_pylist())
    # The parent is the daemon that spawned this node: the deploy test tells the machines apart by it.
    report = {"pid": os.getpid(), "parent_pid": os.getppid(), "received": received}
    Path(os.environ["REPORT_DIR"], "sink.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
