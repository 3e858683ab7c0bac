"""Other log formats made from an MCAP recording, as fleets hold them: rosbag2 SQLite bags and ROS 1 bags written by
`rosbags-convert` (another project's converter, not our reader), whole-file compressed MCAP, and rosbag2 directories
split into several storage files."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import lz4.frame
import rosbags.convert.converter
import zstandard
from mcap.reader import make_reader
from mcap.writer import Writer
from rosbags.convert import convert
from rosbags.rosbag1 import Writer as Ros1Writer
from ruamel.yaml import YAML

ROSBAG2_VERSION = 9


def _convert(source: Path, out: Path, storage: str = "sqlite3", compress: str | None = None, mode: str = "") -> Path:
    convert(
        [source],
        out,
        dst_storage=storage,
        dst_version=ROSBAG2_VERSION,
        compress=compress,
        compress_mode=mode or "file",
        default_typestore=None,
        typestore=None,
        exclude_topics=[],
        include_topics=[],
        exclude_msgtypes=[],
        include_msgtypes=[],
    )
    return out


def to_rosbag2(mcap: Path, out: Path, storage: str = "sqlite3", compression_mode: str | None = None) -> Path:
    """A rosbag2 directory with one storage file; `compression_mode` "file" or "message" compresses with zstd."""
    return _convert(mcap, out, storage, "zstd" if compression_mode else None, compression_mode or "")


def storage_file(bag: Path) -> Path:
    """The one storage file of a rosbag2 directory."""
    [name] = YAML(typ="safe").load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"][
        "relative_file_paths"
    ]
    return bag / name


class _SmallChunks(Ros1Writer):
    """ROS 1 chunks of 16 KiB instead of 1 MiB, so that a small recording spans several chunks."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path)
        self.chunk_threshold = 16 << 10


@contextlib.contextmanager
def _small_ros1_chunks() -> Iterator[None]:
    original = rosbags.convert.converter.Writer1
    rosbags.convert.converter.Writer1 = _SmallChunks
    try:
        yield
    finally:
        rosbags.convert.converter.Writer1 = original


def to_ros1_bag(mcap: Path, out: Path, compression: str | None = None, small_chunks: bool = False) -> Path:
    """A ROS 1 bag (ROS 1 type names and definitions); `compression` "bz2" or "lz4" compresses its chunks."""
    with _small_ros1_chunks() if small_chunks else contextlib.nullcontext():
        return _convert(mcap, out, compress=compression)


def compress_whole(path: Path, out: Path) -> Path:
    """`path` compressed whole as its name ends: `.zstd` or `.lz4`."""
    with open(path, "rb") as src, open(out, "wb") as dst:
        if out.name.endswith(".zstd"):
            zstandard.ZstdCompressor().copy_stream(src, dst)
        else:
            with lz4.frame.open(dst, "wb") as compressed:
                shutil.copyfileobj(src, compressed)
    return out


def split_mcap(mcap: Path, out: Path, parts: int) -> list[Path]:
    """The recording cut by log time into `parts` MCAP files, each with every schema and channel, the
    attachments and metadata in the first, as `ros2 bag record --max-bag-duration` splits a recording."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{out.name}_{i}.mcap" for i in range(parts)]
    with open(mcap, "rb") as f, contextlib.ExitStack() as files:
        reader = make_reader(f)
        summary = reader.get_summary()
        start, end = summary.statistics.message_start_time, summary.statistics.message_end_time
        span = (end - start) // parts + 1
        writers, channel_ids = [], {}
        for path in paths:
            writer = Writer(files.enter_context(open(path, "wb")))
            writer.start(profile="ros2")
            schema_ids = {
                schema.id: writer.register_schema(schema.name, schema.encoding, schema.data)
                for schema in summary.schemas.values()
            }
            for channel in summary.channels.values():  # the same ids in every part, as registered in the same order
                channel_ids[channel.id] = writer.register_channel(
                    channel.topic, channel.message_encoding, schema_ids[channel.schema_id], channel.metadata
                )
            writers.append(writer)
        for attachment in reader.iter_attachments():
            writers[0].add_attachment(
                attachment.create_time, attachment.log_time, attachment.name, attachment.media_type, attachment.data
            )
        for metadata in reader.iter_metadata():
            writers[0].add_metadata(metadata.name, metadata.metadata)
        for _, channel, message in reader.iter_messages(log_time_order=False):
            writers[(message.log_time - start) // span].add_message(
                channel_ids[channel.id], message.log_time, message.data, message.publish_time, message.sequence
            )
        for writer in writers:
            writer.finish()
    return paths


def split_rosbag2(mcap: Path, out: Path, storage: str, parts: int, custom_data: dict[str, str] | None = None) -> Path:
    """A rosbag2 directory of `parts` storage files (`mcap` or `sqlite3`), with the `metadata.yaml` that
    `rosbags-convert` writes, listing them all, and `custom_data` as `ros2 bag record --custom-data` adds it."""
    scratch = out.with_name(f"{out.name}-parts")
    slices = split_mcap(mcap, scratch, parts)
    whole = to_rosbag2(mcap, out, storage)
    storage_file(whole).unlink()
    names = []
    for i, piece in enumerate(slices):
        names.append(f"{out.name}_{i}.{'mcap' if storage == 'mcap' else 'db3'}")
        shutil.move(
            piece if storage == "mcap" else storage_file(to_rosbag2(piece, scratch / f"db3-{i}")), out / names[-1]
        )
    shutil.rmtree(scratch)
    yaml = YAML()
    metadata = yaml.load((out / "metadata.yaml").read_text())
    info = metadata["rosbag2_bagfile_information"]
    info["relative_file_paths"] = names
    info["files"] = [{"path": name} for name in names]
    info["custom_data"] = custom_data
    with open(out / "metadata.yaml", "w") as f:
        yaml.dump(metadata, f)
    return out
