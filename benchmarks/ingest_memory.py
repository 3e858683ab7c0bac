"""Peak memory of `astra ingest` against file size: one MCAP each of about 100 MB, 500 MB and 2 GB, made by
repeating a 12 s recording (default cameras, about 100 MB) end to end with its log times shifted, each ingested by
a fresh process under `/usr/bin/time`. The naive script (`benchmarks/naive_ingest.py`, which holds a file's rows
until it writes them) runs beside it on the files it can hold.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

from mcap.records import Attachment, Message, Metadata
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter
from tqdm import tqdm

from datasets.mcap_reader import SalvagingReader
from sim.world import generate_world, write_world

SIZES_MB = (100, 500, 2000)
NAIVE_UP_TO_MB = 2000  # the naive script holds a whole file's decoded rows: 4.8 GB at 2 GB, within 24 GB
SECONDS = 12  # about 100 MB at the default cameras


def _recording(workdir: Path) -> Path:
    logs = workdir / "recording"
    found = sorted(logs.glob("*.mcap"))
    if found:
        return found[0]
    world = workdir / "office-0"
    write_world(generate_world("office", 0), world)
    astra = Path(sys.executable).parent / "astra"
    command = [str(astra), "record", "--world", str(world), "--seconds", str(SECONDS), "--out", str(logs)]
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
    return sorted(logs.glob("*.mcap"))[0]


def repeat_recording(source: Path, out: Path, target_bytes: int) -> Path:
    """`source` repeated end to end into `out` until it holds about `target_bytes`; each copy's log and publish
    times come after the one before, so the result reads as one long recording."""
    with open(source, "rb") as f:
        reader = SalvagingReader(f)
        records = list(reader.records())
        schemas, channels = reader.schemas, reader.channels
    messages = [r for r in records if isinstance(r, Message)]
    times = [m.log_time for m in messages]
    span = max(times) - min(times) + 1_000_000_000
    copies = max(1, math.ceil(target_bytes / source.stat().st_size))
    with open(out, "wb") as f:
        writer = McapWriter(f, compression=CompressionType.ZSTD)
        writer.start(profile="ros2", library="astra benchmarks")
        schema_ids = {s.id: writer.register_schema(s.name, s.encoding, s.data) for s in schemas.values()}
        channel_ids = {
            c.id: writer.register_channel(c.topic, c.message_encoding, schema_ids.get(c.schema_id, 0), c.metadata)
            for c in channels.values()
        }
        for record in records:
            if isinstance(record, Metadata):
                writer.add_metadata(record.name, record.metadata)
            elif isinstance(record, Attachment):
                writer.add_attachment(record.create_time, record.log_time, record.name, record.media_type, record.data)
        for copy in tqdm(range(copies), desc=f"repeat x{copies}", unit="copy", leave=False):
            shift = copy * span
            for m in messages:
                writer.add_message(
                    channel_ids[m.channel_id], m.log_time + shift, m.data, m.publish_time + shift, m.sequence
                )
        writer.finish()
    return out


def peak_rss(command: list[str]) -> tuple[float, float]:
    """Peak resident memory (MB) and wall time (s) of a command, from GNU time."""
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%M %e", *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {result.stderr[-2000:]}")
    kilobytes, seconds = result.stderr.strip().splitlines()[-1].split()
    return int(kilobytes) / 1024, float(seconds)


def run(workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    source = _recording(workdir)
    bin_dir = Path(sys.executable).parent
    naive = Path(__file__).with_name("naive_ingest.py")
    rows = []
    print(f"{'file':>9} {'astra ingest':>18} {'naive script':>18}")
    for size_mb in SIZES_MB:
        big = repeat_recording(source, workdir / f"repeated-{size_mb}MB.mcap", size_mb * 1_000_000)
        file_mb = big.stat().st_size / 1e6
        lake, naive_out = workdir / "lake", workdir / "naive"
        shutil.rmtree(lake, ignore_errors=True)
        astra_mb, astra_s = peak_rss([str(bin_dir / "astra"), "ingest", str(big), "--lake", str(lake)])
        row = {"file_mb": round(file_mb), "astra_peak_mb": round(astra_mb), "astra_seconds": astra_s}
        if size_mb <= NAIVE_UP_TO_MB:
            shutil.rmtree(naive_out, ignore_errors=True)
            naive_mb, naive_s = peak_rss([sys.executable, str(naive), str(naive_out), str(big)])
            row |= {"naive_peak_mb": round(naive_mb), "naive_seconds": naive_s}
        shutil.rmtree(lake, ignore_errors=True)
        shutil.rmtree(naive_out, ignore_errors=True)
        big.unlink()
        naive_text = f"{row['naive_peak_mb']:6d} MB {row['naive_seconds']:6.1f} s" if "naive_peak_mb" in row else "-"
        print(f"{row['file_mb']:6d} MB {row['astra_peak_mb']:6d} MB {astra_s:6.1f} s {naive_text:>18}", flush=True)
        rows.append(row)
    return {"source_mb": round(source.stat().st_size / 1e6, 1), "runs": rows}
