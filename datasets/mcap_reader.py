"""Read whatever an MCAP file still holds: every intact record, and a list of the damage found.

Built on `mcap.stream_reader.StreamReader`, which walks the file record by record. Chunks are
taken whole and opened here one at a time, so a chunk with a bad CRC, an unknown compression or
corrupt contents costs only its own messages. When the record framing itself breaks, reading
resumes at the chunks, attachments and metadata that the summary indexes after the break, if the
footer and summary survived and their CRC checks out.

A chunk's records are parsed here with `struct` over its decompressed bytes: the library's
per-field stream reads cost a third of a whole ingest.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import lz4.frame
import zstandard
from mcap.data_stream import ReadDataStream
from mcap.exceptions import EndOfFile, InvalidMagic
from mcap.opcode import Opcode
from mcap.reader import FOOTER_SIZE
from mcap.records import (
    Attachment,
    AttachmentIndex,
    Channel,
    Chunk,
    ChunkIndex,
    Footer,
    Header,
    McapRecord,
    Message,
    Metadata,
    MetadataIndex,
    Schema,
)
from mcap.stream_reader import MAGIC_SIZE, CRCValidationError, StreamReader
from mcap.summary import Summary

COMPRESSIONS = frozenset({"", "zstd", "lz4"})
_CRC_SIZE = 4
_RECORD_HEAD = struct.Struct("<BQ")  # opcode, content length
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time

Content = Message | Attachment | Metadata


@dataclass(frozen=True)
class Damage:
    """One problem found in a file: what, where (byte offset of the record, if known) and details."""

    kind: str  # empty, not_mcap, bad_magic, truncated, bad_record, bad_chunk, chunk_crc, compression, data_crc
    offset: int | None
    detail: str

    def __str__(self) -> str:
        where = "" if self.offset is None else f" at byte {self.offset}"
        return f"{self.kind}{where}: {self.detail}"


def chunk_records(chunk: Chunk) -> list[Message | Schema | Channel]:
    """The messages, schemas and channels of a chunk, as `mcap.stream_reader.breakup_chunk` reads them.

    Raises CRCValidationError when the decompressed bytes fail the chunk's CRC, ValueError when a record runs
    past the chunk's end.
    """
    if chunk.compression == "zstd":
        data = zstandard.ZstdDecompressor().decompress(chunk.data, max_output_size=chunk.uncompressed_size)
    elif chunk.compression == "lz4":
        data = lz4.frame.decompress(chunk.data)
    else:
        data = chunk.data
    if chunk.uncompressed_crc and zlib.crc32(data) != chunk.uncompressed_crc:
        raise CRCValidationError(chunk.uncompressed_crc, zlib.crc32(data), chunk)
    records: list[Message | Schema | Channel] = []
    position, size = 0, len(data)
    while position < size:
        opcode, length = _RECORD_HEAD.unpack_from(data, position)
        start, position = position + _RECORD_HEAD.size, position + _RECORD_HEAD.size + length
        if position > size:
            raise ValueError(f"a record of {length} bytes runs past the chunk's end")
        if opcode == Opcode.MESSAGE:
            if length < _MESSAGE_HEAD.size:
                raise ValueError(f"a message record of {length} bytes")
            channel_id, sequence, log_time, publish_time = _MESSAGE_HEAD.unpack_from(data, start)
            payload = data[start + _MESSAGE_HEAD.size : position]
            records.append(Message(channel_id, log_time, payload, publish_time, sequence))
        elif opcode in (Opcode.SCHEMA, Opcode.CHANNEL):
            record_type = Schema if opcode == Opcode.SCHEMA else Channel
            records.append(record_type.read(ReadDataStream(io.BytesIO(data[start:position]))))
    return records


class _StreamReader(StreamReader):
    """The library's reader, stepping over message indexes unparsed: files are read whole, in file order, so the
    index records are never needed, and the library reads their entries one field at a time (two reads per
    message of the file)."""

    def _read_record(self, opcode: int, length: int) -> McapRecord | None:
        if opcode == Opcode.MESSAGE_INDEX:
            return None  # the caller reads past the record's `length` bytes
        return super()._read_record(opcode, length)


def _add_to_summary(summary: Summary, record: McapRecord) -> None:
    if isinstance(record, Schema):
        summary.schemas[record.id] = record
    elif isinstance(record, Channel):
        summary.channels[record.id] = record
    elif isinstance(record, ChunkIndex):
        summary.chunk_indexes.append(record)
    elif isinstance(record, AttachmentIndex):
        summary.attachment_indexes.append(record)
    elif isinstance(record, MetadataIndex):
        summary.metadata_indexes.append(record)


class SalvagingReader:
    """Yields the messages, attachments and metadata of an MCAP file that can be read.

    Damage is collected in `damage` instead of raised. Schemas and channels are collected in
    `schemas` and `channels` (those the summary lists come first, so messages whose channel record
    was lost can still be placed); look a message's channel up there as it arrives.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._size = os.fstat(file.fileno()).st_size
        self.header: Header | None = None
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Channel] = {}
        self.damage: list[Damage] = []

    def records(self) -> Iterator[Content]:
        """Every readable message, attachment and metadata record, in file order."""
        if self._size == 0:
            self.damage.append(Damage("empty", 0, "the file is empty"))
            return
        summary = self._summary()
        if summary is not None:
            self.schemas.update(summary.schemas)
            self.channels.update(summary.channels)
        broken_at = yield from self._data_section()
        if broken_at is not None and summary is not None:
            yield from self._indexed_after(summary, broken_at)

    def _data_section(self) -> Generator[Content, None, int | None]:
        """Read from the start; returns the offset of the record where the framing broke, if it did."""
        self._file.seek(0)
        stream = _StreamReader(self._file, emit_chunks=True, validate_crcs=True, record_size_limit=self._size)
        offset = 0
        try:
            for record in stream.records:
                yield from self._open(record, offset)
                offset = self._file.tell()
        except CRCValidationError as e:  # the data section CRC, checked at DataEnd once all data is read
            self.damage.append(Damage("data_crc", offset, str(e)))
        except InvalidMagic as e:
            if offset:  # the closing magic, after the footer: all data was read
                self.damage.append(Damage("bad_magic", offset, str(e)))
                return None
            self.damage.append(Damage("not_mcap", 0, str(e)))
            return 0
        except EndOfFile:
            self.damage.append(Damage("truncated", offset, f"the file ends inside a record ({self._size} bytes)"))
            return offset
        except Exception as e:  # any other failure to frame a record: a corrupt length, opcode or field
            self.damage.append(Damage("bad_record", offset, f"{type(e).__name__}: {e}"))
            return offset
        return None

    def _open(self, record: McapRecord, offset: int) -> Iterator[Content]:
        if isinstance(record, Chunk):
            yield from self._chunk(record, offset)
        elif isinstance(record, Message | Attachment | Metadata):
            yield record
        elif isinstance(record, Schema):
            self.schemas[record.id] = record
        elif isinstance(record, Channel):
            self.channels[record.id] = record
        elif isinstance(record, Header):
            self.header = record

    def _chunk(self, chunk: Chunk, offset: int) -> Iterator[Content]:
        if chunk.compression not in COMPRESSIONS:
            self.damage.append(Damage("compression", offset, f"chunk compressed with unknown {chunk.compression!r}"))
            return
        try:
            records = chunk_records(chunk)
        except CRCValidationError as e:
            self.damage.append(Damage("chunk_crc", offset, str(e)))
            return
        except Exception as e:  # a corrupt chunk costs its own records only, whatever broke inside it
            self.damage.append(Damage("bad_chunk", offset, f"{type(e).__name__}: {e}"))
            return
        for record in records:
            if isinstance(record, Message):
                yield record
            else:
                yield from self._open(record, offset)

    def _summary(self) -> Summary | None:
        """The summary section, if the footer survived and the summary CRC checks out."""
        f, size = self._file, self._size
        crc_end = size - MAGIC_SIZE - _CRC_SIZE  # the summary CRC covers the footer up to the CRC field
        try:
            f.seek(size - FOOTER_SIZE - MAGIC_SIZE)
            footer = next(StreamReader(f, skip_magic=True, record_size_limit=FOOTER_SIZE).records)
            if not isinstance(footer, Footer) or not 0 < footer.summary_start < crc_end:
                return None
            f.seek(footer.summary_start)
            if footer.summary_crc and zlib.crc32(f.read(crc_end - footer.summary_start)) != footer.summary_crc:
                return None
            f.seek(footer.summary_start)
            summary = Summary()
            for record in StreamReader(f, skip_magic=True, record_size_limit=size).records:
                if isinstance(record, Footer):
                    return summary
                _add_to_summary(summary, record)
        except Exception:  # no usable summary: the file is still read from the start
            pass
        return None

    def _indexed_after(self, summary: Summary, broken_at: int) -> Iterator[Content]:
        """Chunks, attachments and metadata the summary indexes past the point where framing broke."""
        offsets = sorted(
            offset
            for offset in (
                *(i.chunk_start_offset for i in summary.chunk_indexes),
                *(i.offset for i in summary.attachment_indexes),
                *(i.offset for i in summary.metadata_indexes),
            )
            if offset > broken_at
        )
        for offset in offsets:
            self._file.seek(offset)
            stream = StreamReader(self._file, skip_magic=True, emit_chunks=True, record_size_limit=self._size)
            try:
                record = next(stream.records)
            except Exception as e:  # this indexed record is damaged too; the others may not be
                self.damage.append(Damage("bad_record", offset, f"{type(e).__name__}: {e}"))
                continue
            yield from self._open(record, offset)
