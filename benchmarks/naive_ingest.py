"""The script a user would write instead of `astra ingest`: the reference that ingest's throughput is measured against.

It decodes every message with `mcap-ros2-support`'s `make_reader(...).iter_decoded_messages()` and writes one Parquet
file per topic and recording with pyarrow, nested messages as Arrow structs. Run it as a whole process:

    python benchmarks/naive_ingest.py OUT_DIR FILE.mcap [FILE.mcap ...]
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory


def plain(value: Any) -> Any:
    """A decoded message as dicts and lists, which pyarrow turns into structs; a message with no fields is None
    (Parquet cannot store an empty struct)."""
    if hasattr(value, "__slots__"):
        fields = {name: plain(getattr(value, name)) for name in value.__slots__}
        return fields or None
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def ingest(out: Path, files: list[Path]) -> int:
    """Every message of `files` into `out`; returns the number of messages."""
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for index, path in enumerate(files):
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        with open(path, "rb") as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory()])
            for _, channel, message, decoded in reader.iter_decoded_messages():
                rows[channel.topic].append({"log_time": message.log_time, "message": plain(decoded)})
        for topic, topic_rows in rows.items():
            name = topic.strip("/").replace("/", "__") or "root"
            pq.write_table(pa.Table.from_pylist(topic_rows), out / f"{index:04d}_{name}.parquet")
            count += len(topic_rows)
    return count


if __name__ == "__main__":
    print(ingest(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]), "messages")
