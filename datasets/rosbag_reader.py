"""Read rosbag2 SQLite files (`.db3`) and ROS 1 bags (`.bag`) as the records an MCAP file of the same recording holds.

Both readers have the interface of `datasets.mcap_reader.SalvagingReader`: `records()` yields `mcap` `Message`
records whose payloads are ROS 2 CDR, and `channels`, `schemas` and `damage` fill as the file is read. So every
format reaches the same ROS 2 decoders and the same lake rows. Both read from the start of the file, not
from an index, so that a damaged file yields every message before the damage, and the damage is listed
instead of raised.

ROS 1 messages are converted to CDR with `rosbags`: each connection's ROS 1 definition is registered in a
typestore whose `std_msgs/Header` is the ROS 2 one (no `seq`), so `ros1_to_cdr` drops the sequence number and
the ROS 2 definition text generated from the same typestore describes the converted bytes. ROS 1 type names
(`sensor_msgs/Imu`) become ROS 2 names (`sensor_msgs/msg/Imu`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import zstandard
from mcap.records import Channel, Message, Schema
from mcap.well_known import MessageEncoding, SchemaEncoding
from rosbags.rosbag1.reader import Header, RecordType, decompressors, normalize, read_bytes, read_uint32
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.msg import normalize_msgtype
from rosbags.typesys.store import Typestore

from datasets.mcap_reader import Damage

SQLITE_MAGIC = b"SQLite format 3\x00"
ROS1_MAGIC = b"#ROSBAG V2.0\n"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # a CDR payload starts with 0x00 (its encapsulation header), never with this
# Types renamed between ROS 1 and ROS 2 with the same wire format (as `rosbags-convert` renames them).
ROS1_RENAMES = {"tf/msg/tfMessage": "tf2_msgs/msg/TFMessage"}
_DEFINITION_ENCODINGS = {"ros2msg": SchemaEncoding.ROS2, "ros2idl": "ros2idl"}


@cache
def _ros2_store() -> Typestore:
    return get_typestore(Stores.LATEST)


def ros2_definition(msgtype: str) -> str | None:
    """The ROS 2 message definition of a standard type, for bags that do not store definitions (before Iron)."""
    store = _ros2_store()
    return store.generate_msgdef(msgtype, ros_version=2)[0] if msgtype in store.fielddefs else None


def _sqlite_damage(path: Path, size: int) -> tuple[Damage | None, int]:
    """A file that is not SQLite, or one shorter than its header says (cut off while copied or recorded); and
    the bytes of its whole pages."""
    with open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(SQLITE_MAGIC):
        return Damage("not_db3", 0, "not an SQLite database"), 0
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    whole = size - size % page_size
    if header[24:28] == header[92:96] and size < pages * page_size:  # the page count is valid when these agree
        return Damage("truncated", size, f"the file ends inside page {size // page_size + 1} of {pages}"), whole
    return None, whole


def _copy_start(source: Path, target: Path, size: int) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        while size and (chunk := src.read(min(size, 1 << 20))):
            dst.write(chunk)
            size -= len(chunk)


class Rosbag2SqliteReader:
    """The messages of a rosbag2 SQLite file, in the order they were written. Zstd-compressed payloads
    (rosbag2's per-message compression) are decompressed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Channel] = {}
        self.damage: list[Damage] = []

    def records(self) -> Iterator[Message]:
        size = os.path.getsize(self.path)
        if size == 0:
            self.damage.append(Damage("empty", 0, "the file is empty"))
            return
        damage, whole = _sqlite_damage(self.path, size)
        if damage is not None:
            self.damage.append(damage)
            if damage.kind == "not_db3":
                return
        with tempfile.TemporaryDirectory(prefix="astra-db3-") as tmp:
            path = self.path
            if whole < size:  # SQLite reads a page cut short as its start and zeros: rows of garbage. Leave it out.
                path = Path(tmp, "whole-pages.db3")
                _copy_start(self.path, path, whole)
            connection = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)
            try:
                # SQLite refuses a file shorter than its header says; this lets it read the pages that are there.
                connection.execute("PRAGMA writable_schema = ON")
                self._read_topics(connection)
                yield from self._messages(connection)
            finally:
                connection.close()

    def _read_topics(self, connection: sqlite3.Connection) -> None:
        try:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            definitions: dict[str, tuple[str, str]] = {}
            if "message_definitions" in tables:  # rosbag2 stores definitions since Iron
                query = "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"
                definitions = {name: (encoding, text) for name, encoding, text in connection.execute(query)}
            cursor = connection.execute("SELECT * FROM topics ORDER BY id")
            columns = [d[0] for d in cursor.description]
            topics = [dict(zip(columns, row, strict=True)) for row in cursor]
        except sqlite3.DatabaseError as e:
            self.damage.append(Damage("bad_record", None, f"the topics are unreadable: {e}"))
            return
        schema_ids: dict[str, int] = {}
        for topic in topics:
            msgtype = topic["type"]
            if msgtype not in schema_ids:
                schema_ids[msgtype] = len(schema_ids) + 1
                encoding, text = definitions.get(msgtype, ("", ""))
                if encoding not in _DEFINITION_ENCODINGS or not text:
                    text = ros2_definition(msgtype)
                    encoding = "ros2msg" if text else ""
                self.schemas[schema_ids[msgtype]] = Schema(
                    id=schema_ids[msgtype],
                    name=msgtype,
                    encoding=_DEFINITION_ENCODINGS.get(encoding, ""),
                    data=(text or "").encode(),
                )
            qos = topic.get("offered_qos_profiles")
            self.channels[topic["id"]] = Channel(
                id=topic["id"],
                schema_id=schema_ids[msgtype],
                topic=topic["name"],
                message_encoding=topic["serialization_format"],
                metadata={"offered_qos_profiles": qos} if qos else {},
            )

    def _messages(self, connection: sqlite3.Connection) -> Iterator[Message]:
        last, broken = None, 0
        try:
            # In rowid order: a plain scan of the table, which needs no index and stops only where pages are missing.
            for rowid, topic_id, timestamp, data in connection.execute(
                "SELECT id, topic_id, timestamp, data FROM messages ORDER BY id"
            ):
                if not isinstance(data, bytes) or topic_id is None or timestamp is None:  # a zeroed page's rows
                    broken += 1
                    continue
                last = rowid
                if data[:4] == ZSTD_MAGIC:
                    try:
                        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
                    except zstandard.ZstdError as e:
                        self.damage.append(Damage("compression", None, f"message {rowid}: {e}"))
                        continue
                yield Message(channel_id=topic_id, sequence=0, log_time=timestamp, publish_time=timestamp, data=data)
        except sqlite3.DatabaseError as e:
            after = "from the first message" if last is None else f"after message {last}"
            self.damage.append(Damage("bad_record", None, f"the messages are unreadable {after}: {e}"))
        if broken:
            self.damage.append(Damage("bad_record", None, f"{broken} message rows have no topic, time or data"))


@cache
def _ros1_converter(msgtype: str, definition: str) -> tuple[Callable[[bytes], memoryview], str]:
    """A ROS 1 -> CDR converter for one type and definition, and the ROS 2 definition of its output."""
    types = get_types_from_msg(definition, msgtype)
    types["std_msgs/msg/Header"] = get_typestore(Stores.ROS2_FOXY).fielddefs["std_msgs/msg/Header"]
    store = get_typestore(Stores.EMPTY)
    store.register(types)
    return (lambda raw: store.ros1_to_cdr(raw, msgtype)), store.generate_msgdef(msgtype, ros_version=2)[0]


class Ros1BagReader:
    """The messages of a ROS 1 bag (format 2.0), chunk by chunk in file order, converted to ROS 2 CDR.

    A connection whose definition cannot be converted keeps its ROS 1 bytes, with the ROS 1 encodings, so
    its messages land raw. A message that does not convert keeps its ROS 1 bytes too, and fails to decode.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Channel] = {}
        self.damage: list[Damage] = []
        self._converters: dict[int, Callable[[bytes], memoryview]] = {}

    def records(self) -> Iterator[Message]:
        size = os.path.getsize(self.path)
        if size == 0:
            self.damage.append(Damage("empty", 0, "the file is empty"))
            return
        with open(self.path, "rb") as f:
            if f.readline() != ROS1_MAGIC:
                self.damage.append(Damage("not_bag", 0, "not a ROS 1 bag (format 2.0)"))
                return
            offset = f.tell()
            try:
                header = Header.read(f, RecordType.BAGHEADER)
                f.seek(read_uint32(f), os.SEEK_CUR)  # the bag header's padding
                index_pos = header.get_uint64("index_pos")
                if index_pos == 0:
                    self.damage.append(Damage("unindexed", offset, "the bag was not closed: it has no index"))
                elif index_pos > size:
                    self.damage.append(Damage("truncated", size, f"the file ends before its index at {index_pos}"))
                end = index_pos if 0 < index_pos <= size else size  # the index repeats connections only
                while (offset := f.tell()) < end:
                    yield from self._record(f, offset)
            except Exception as e:  # any record that does not frame: a cut-off file, or a corrupt length or field
                kind = "truncated" if f.tell() >= size else "bad_record"
                self.damage.append(Damage(kind, offset, f"{type(e).__name__}: {e}"))

    def _record(self, f: BinaryIO, offset: int) -> Iterator[Message]:
        header = Header.read(f)
        op = header.get_uint8("op")
        if op == RecordType.CONNECTION:
            self._connection(header, Header.read(f))  # a connection's data is framed like a header
            return
        data = read_bytes(f, read_uint32(f))
        if op == RecordType.MSGDATA:
            yield self._message(header, data)
        elif op == RecordType.CHUNK:
            yield from self._chunk(header, data, offset)

    def _chunk(self, header: Header, data: bytes, offset: int) -> Iterator[Message]:
        compression = header.get_string("compression")
        if compression not in decompressors:
            self.damage.append(Damage("compression", offset, f"chunk compressed with unknown {compression!r}"))
            return
        try:
            records = decompressors[compression](data)
            inner = BytesIO(records)
            while inner.tell() < len(records):
                yield from self._record(inner, offset)
        except Exception as e:  # a corrupt chunk costs the rest of its own records only
            self.damage.append(Damage("bad_chunk", offset, f"{type(e).__name__}: {e}"))

    def _connection(self, header: Header, fields: Header) -> None:
        conn = header.get_uint32("conn")
        if conn in self.channels:  # connections are written again in the index
            return
        msgtype = normalize_msgtype(fields.get_string("type"))
        msgtype = ROS1_RENAMES.get(msgtype, msgtype)
        definition = fields.get_string("message_definition")
        metadata = {name: fields.get_string(name) for name in ("md5sum", "callerid", "latching") if name in fields}
        try:
            self._converters[conn], ros2 = _ros1_converter(msgtype, definition)
            schema = Schema(id=conn, name=msgtype, encoding=SchemaEncoding.ROS2, data=ros2.encode())
            encoding = MessageEncoding.CDR
        except Exception:  # a definition rosbags cannot parse: keep the ROS 1 bytes
            schema = Schema(id=conn, name=msgtype, encoding=SchemaEncoding.ROS1, data=definition.encode())
            encoding = MessageEncoding.ROS1
        self.schemas[conn] = schema
        topic = normalize(header.get_string("topic"))
        self.channels[conn] = Channel(
            id=conn, schema_id=conn, topic=topic, message_encoding=encoding, metadata=metadata
        )

    def _message(self, header: Header, data: bytes) -> Message:
        conn, time = header.get_uint32("conn"), header.get_time("time")
        convert = self._converters.get(conn)
        if convert is not None:
            # A payload that does not fit its definition stays ROS 1, and fails to decode.
            with contextlib.suppress(Exception):
                data = bytes(convert(data))
        return Message(channel_id=conn, sequence=0, log_time=time, publish_time=time, data=data)
