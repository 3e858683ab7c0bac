"""Which paths are robot logs, and reading any of them as MCAP records.

A log is one recording, read as one episode:
- an MCAP file (`.mcap`), also compressed whole (`.mcap.zstd`, `.mcap.lz4`);
- a rosbag2 SQLite file (`.db3`, also `.db3.zstd` as rosbag2's file compression writes it);
- a ROS 1 bag (`.bag`; `.bag.active` is one whose recorder never closed it);
- a rosbag2 directory: a folder with `metadata.yaml`, whose storage files (split by size or time) are one
  recording, read in the order the metadata lists them.

`open_log` gives every format the interface of `datasets.mcap_reader.SalvagingReader` (`LogReader`), so
that ingest reads them all alike. Whole-file compressed logs are decompressed as a stream into a
temporary file first, so that memory does not grow with the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import lz4.frame
import zstandard
from mcap.records import Channel, Message, Metadata, Schema

from datasets.mcap_reader import Content, Damage, SalvagingReader

ROSBAG2_METADATA = "metadata.yaml"
# Name endings of the files read, longest first: a compressed one is read as what it decompresses to.
SUFFIXES = (".mcap.zstd", ".mcap.lz4", ".db3.zstd", ".bag.active", ".mcap", ".db3", ".bag")
_DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    ".zstd": lambda: zstandard.ZstdDecompressor().decompressobj(),
    ".lz4": lz4.frame.LZ4FrameDecompressor,
}
_COPY_BYTES = 1 << 20
UNSUPPORTED, EMPTY = "unsupported format", "empty"


class LogReader(Protocol):
    """What ingest reads a log through: its records as they come, and what they refer to and what broke."""

    schemas: dict[int, Schema]
    channels: dict[int, Channel]
    damage: list[Damage]

    def records(self) -> Iterator[Content]: ...


def log_suffix(path: Path) -> str | None:
    """The name ending that makes `path` a log file, or None."""
    name = path.name.lower()
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), None)


def is_rosbag2_dir(path: Path) -> bool:
    return (path / ROSBAG2_METADATA).is_file()


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


@dataclass(frozen=True)
class Rosbag2Layout:
    """A rosbag2 directory's storage files in recording order, and its custom data.

    Where `metadata.yaml` cannot be read, the directory's log files in natural order (`bag_2` before
    `bag_10`) stand in, and `problem` says why."""

    files: list[Path]
    missing: list[str]
    custom_data: dict[str, str]
    problem: str | None = None


def rosbag2_layout(directory: Path) -> Rosbag2Layout:
    from ruamel.yaml import YAML  # here: an ingest of MCAP files alone need not import it (0.05 s)

    try:
        info = YAML(typ="safe").load((directory / ROSBAG2_METADATA).read_text())["rosbag2_bagfile_information"]
        names = [Path(p).name for p in info["relative_file_paths"]]
        custom = info.get("custom_data") or {}
    except Exception as e:  # unreadable YAML, or not rosbag2's: read the storage files that are there
        files = sorted((p for p in directory.iterdir() if p.is_file() and log_suffix(p)), key=_natural_key)
        return Rosbag2Layout(files, [], {}, f"{ROSBAG2_METADATA} unreadable: {type(e).__name__}: {e}")
    present = [directory / n for n in names if (directory / n).is_file()]
    missing = [n for n in names if not (directory / n).is_file()]
    return Rosbag2Layout(present, missing, {str(k): str(v) for k, v in custom.items()})


def log_members(path: Path) -> list[Path]:
    """The files a log is made of: the file itself, or a rosbag2 directory's metadata and storage files."""
    return [path / ROSBAG2_METADATA, *rosbag2_layout(path).files] if path.is_dir() else [path]


@dataclass(frozen=True)
class LogListing:
    """The logs under some paths, sorted, and every file found that is not read, with the reason."""

    logs: list[Path]
    skipped: dict[str, str]


def list_logs(paths: Iterable[Path]) -> LogListing:
    """Logs given by name, and every log under the directories given, each once.

    Files that are not logs, and empty ones, are listed in `skipped`: "unsupported format" or "empty".
    Raises FileNotFoundError for a path that does not exist.
    """
    logs: set[Path] = set()
    skipped: dict[str, str] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"no such file or directory: {path}")
        path = path.resolve()
        if path.is_file():
            candidates = [path]
        else:
            candidates = _logs_under(path)
            if not candidates:
                skipped[str(path)] = EMPTY
        for candidate in candidates:
            reason = _reason_to_skip(candidate)
            if reason is None:
                logs.add(candidate)
            else:
                skipped[str(candidate)] = reason
    return LogListing(sorted(logs), dict(sorted(skipped.items())))


def _logs_under(directory: Path) -> list[Path]:
    """`directory` itself if it is a rosbag2 directory, else every rosbag2 directory and every other file under
    it. Files in a rosbag2 directory other than its own are listed too, so that they are not skipped silently."""
    if is_rosbag2_dir(directory):
        members = set(log_members(directory))
        return [directory, *(p for p in directory.rglob("*") if p.is_file() and p not in members)]
    found: list[Path] = []
    for root, dirs, files in os.walk(directory):
        here = Path(root)
        bags = [d for d in dirs if is_rosbag2_dir(here / d)]
        for bag in bags:
            found.extend(_logs_under(here / bag))
        dirs[:] = sorted(set(dirs) - set(bags))
        found.extend(here / f for f in files)
    return found


def _reason_to_skip(path: Path) -> str | None:
    if path.is_dir():
        return None
    if log_suffix(path) is None:
        return UNSUPPORTED
    return EMPTY if path.stat().st_size == 0 else None


def _decompress(src: BinaryIO, out: BinaryIO, new: Callable[[], Any]) -> bool:
    """Copy a stream of one or more compressed frames to `out`, decompressed; False if it ends inside a frame."""
    decompressor, started = new(), False
    while chunk := src.read(_COPY_BYTES):
        while chunk:
            out.write(decompressor.decompress(chunk))
            started = True
            if not decompressor.eof:
                break
            chunk, decompressor, started = decompressor.unused_data, new(), False
    return not started or decompressor.eof


def _open_file(path: Path, stack: contextlib.ExitStack) -> LogReader:
    suffix = log_suffix(path)
    if suffix in (".mcap.zstd", ".mcap.lz4", ".db3.zstd"):
        plain, ending = suffix.rsplit(".", 1)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="astra-log-"))) / f"log{plain}"
        damage = None
        with open(path, "rb") as src, open(tmp, "wb") as out:
            try:
                if not _decompress(src, out, _DECOMPRESSORS[f".{ending}"]):
                    damage = Damage("compression", None, f"the {ending} stream ends inside a frame")
            except Exception as e:  # corrupt compressed data: read what was decompressed before it
                damage = Damage("compression", None, f"{ending}: {type(e).__name__}: {e}")
        reader = _open_file(tmp, stack)
        if damage is not None:
            reader.damage.append(damage)
        return reader
    # The bag readers import `rosbags` (0.1 s): here, so that an ingest of MCAP files alone does not.
    if suffix == ".db3":
        from datasets.rosbag_reader import Rosbag2SqliteReader

        return Rosbag2SqliteReader(path)
    if suffix in (".bag", ".bag.active"):
        from datasets.rosbag_reader import Ros1BagReader

        return Ros1BagReader(path)
    return SalvagingReader(stack.enter_context(open(path, "rb")))


@contextlib.contextmanager
def open_log(path: Path) -> Iterator[LogReader]:
    """A reader of the log at `path` (see `list_logs`); files it decompressed are removed on leaving."""
    if path.is_dir():
        yield Rosbag2DirectoryReader(path)
        return
    with contextlib.ExitStack() as stack:
        yield _open_file(path, stack)


class Rosbag2DirectoryReader:
    """The storage files of a rosbag2 directory read one after the other, as one log.

    Channel and schema ids are per file, so each file's channels are renumbered: the same topic, encoding
    and schema in every file is one channel. The directory's custom data comes last, as a metadata record
    named "rosbag2"; damage names the file it was found in.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Channel] = {}
        self.damage: list[Damage] = []
        self._channel_ids: dict[tuple, int] = {}  # (topic, message encoding, schema id) -> channel id
        self._schema_ids: dict[tuple, int] = {}  # (name, encoding, definition) -> schema id
        self._renumbered: dict[tuple[int, int], int] = {}  # (file number, its channel id) -> channel id

    def records(self) -> Iterator[Content]:
        layout = rosbag2_layout(self.directory)
        if layout.problem is not None:
            self.damage.append(Damage("bad_metadata", None, layout.problem))
        self.damage.extend(Damage("missing_file", None, f"{name} is listed but absent") for name in layout.missing)
        for number, path in enumerate(layout.files):
            with contextlib.ExitStack() as stack:  # each file's decompressed copy goes as soon as it is read
                part = _open_file(path, stack)
                for record in part.records():
                    if isinstance(record, Message):
                        record = replace(record, channel_id=self._channel_id(part, number, record.channel_id))
                    yield record
                self.damage.extend(replace(d, detail=f"{path.name}: {d.detail}") for d in part.damage)
        if layout.custom_data:
            yield Metadata(name="rosbag2", metadata=layout.custom_data)

    def _channel_id(self, part: LogReader, number: int, channel_id: int) -> int:
        renumbered = self._renumbered.get((number, channel_id))
        if renumbered is not None:
            return renumbered
        channel = part.channels.get(channel_id)
        if channel is None:  # not described (yet) in a damaged file: a channel of its own, counted as lost
            return self._channel_ids.setdefault(("lost", number, channel_id), -1 - len(self._channel_ids))
        self._renumbered[number, channel_id] = self._merged_channel(part, channel)
        return self._renumbered[number, channel_id]

    def _merged_channel(self, part: LogReader, channel: Channel) -> int:
        schema = part.schemas.get(channel.schema_id)
        schema_id = 0
        if schema is not None:
            key = (schema.name, schema.encoding, schema.data)
            schema_id = self._schema_ids.setdefault(key, len(self._schema_ids) + 1)
            self.schemas[schema_id] = replace(schema, id=schema_id)
        key = (channel.topic, channel.message_encoding, schema_id)
        if key not in self._channel_ids:
            new_id = self._channel_ids[key] = len(self._channel_ids) + 1
            self.channels[new_id] = replace(channel, id=new_id, schema_id=schema_id)
        return self._channel_ids[key]
