"""Decode one channel's ROS 2 CDR payloads into a lake table at once, column by column with numpy.

Why: decoding message by message in pure Python (`mcap_ros2`) and building rows is most of what
ingest spends. Here the channel's payloads are copied into one buffer and the message definition
is walked once for all messages together: every message has its own cursor (a numpy array of
offsets), so headers with strings of any length, sequences of any count and mixed layouts in one
channel need no grouping, and each field costs a few numpy operations for the whole channel.

`decode_table` returns exactly the table the per-message path builds (`mcap_ros2`'s decoder, then
`schemas.ros2_rows.CONVERTERS`, then `schemas.lake.table_from_rows`), or None. None is the
answer whenever this module is not sure to agree with that path: an unsupported type or
definition, a payload the slow path would reject (too short, out-of-range counts, bad UTF-8), a
value `table_from_rows` would reject (a CameraInfo size beyond int32), a payload this module is
stricter about (a string cut short at the very end, which mcap_ros2 silently keeps), mixed byte
orders in one channel. The caller then decodes the whole channel message by message.

What the layout follows, as `mcap_ros2` 0.6 reads CDR (`mcap_ros2/_cdr.py`, `_dynamic.py`):
- a 4-byte encapsulation header; byte 1 odd = little-endian, even = big-endian (the rest ignored);
- every primitive aligned to its own size (8 for float64/int64), counted from the byte after the
  header; arrays of primitives align element by element, so an empty array adds no padding;
- strings: uint32 length including the NUL, then the bytes; a length of 0 or 1 is "";
- sequences: uint32 count, then the elements; fixed-size arrays: the elements only;
- a message with no fields is one uint8; `builtin_interfaces/Time` and `Duration` are
  `uint32 sec, uint32 nanosec` unless the schema text defines them (rosbag2's says `int32 sec`).
The definition is parsed with `mcap_ros2`'s own parser so that both paths see the same fields.

`rosgraph_msgs/msg/Clock` has no lake table (ingest keeps it raw in `messages`), so it is not here.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import pyarrow as pa

from schemas.lake import ROS2_TABLES, TABLES, table_from_rows
from schemas.ros2_rows import is_static_tf

# ROS 2 primitive -> (size in bytes, numpy kind). bool is read as uint8 (mcap_ros2: `uint8() != 0`).
_PRIMITIVES: dict[str, tuple[int, str]] = {
    "bool": (1, "u1"),
    "byte": (1, "u1"),
    "char": (1, "i1"),
    "int8": (1, "i1"),
    "uint8": (1, "u1"),
    "int16": (2, "i2"),
    "uint16": (2, "u2"),
    "int32": (4, "i4"),
    "uint32": (4, "u4"),
    "int64": (8, "i8"),
    "uint64": (8, "u8"),
    "float32": (4, "f4"),
    "float64": (8, "f8"),
}
_SHIFT = {1: 0, 2: 1, 4: 2, 8: 3}
_FLOATS = frozenset({"float32", "float64"})
# Integers whose values all fit int64 arithmetic for stamps (sec * 1e9 + nanosec) and int32 columns.
_SMALL_INTS = frozenset({"char", "byte", "int8", "uint8", "int16", "uint16", "int32", "uint32"})
_STRING = "string"
_SEQUENCE = -1
_INT32_MAX = 2**31 - 1
_PADS = tuple(b"\0" * k for k in range(8))
_SKIP = object()  # rows of a cursor set whose values nobody wants


class _Misfit(Exception):
    """A payload or definition this module does not decode exactly as the slow path would."""


# --- what each supported type's table needs ---------------------------------------------------------
# A column after `t_ns, topic`: (kind, path in the message). Kinds: stamp (builtin_interfaces/Time in
# ns), str, f64, i32, f64s (list<double>), strs (list<string>), static (TFMessage: topic is tf_static).


def _xyz(path: str, names: str = "xyz") -> list[tuple[str, str]]:
    return [("f64", f"{path}.{n}") for n in names]


_STAMP_FRAME = [("stamp", "header.stamp"), ("str", "header.frame_id")]


@dataclass(frozen=True)
class _TypeSpec:
    rows: str | None  # a top-level array of messages giving one row per element (TFMessage), else one per message
    columns: tuple[tuple[str, str | None], ...]


_TYPES: dict[str, _TypeSpec] = {
    "sensor_msgs/msg/Imu": _TypeSpec(
        None,
        (
            *_STAMP_FRAME,
            *_xyz("orientation", "xyzw"),
            *_xyz("angular_velocity"),
            *_xyz("linear_acceleration"),
        ),
    ),
    "nav_msgs/msg/Odometry": _TypeSpec(
        None,
        (
            *_STAMP_FRAME,
            ("str", "child_frame_id"),
            *_xyz("pose.pose.position"),
            *_xyz("pose.pose.orientation", "xyzw"),
            *_xyz("twist.twist.linear"),
            *_xyz("twist.twist.angular"),
        ),
    ),
    "sensor_msgs/msg/JointState": _TypeSpec(
        None, (*_STAMP_FRAME, ("strs", "name"), ("f64s", "position"), ("f64s", "velocity"), ("f64s", "effort"))
    ),
    "geometry_msgs/msg/Twist": _TypeSpec(None, (*_xyz("linear"), *_xyz("angular"))),
    "tf2_msgs/msg/TFMessage": _TypeSpec(
        "transforms",
        (
            ("stamp", "transforms.header.stamp"),
            ("str", "transforms.header.frame_id"),
            ("str", "transforms.child_frame_id"),
            *_xyz("transforms.transform.translation"),
            *_xyz("transforms.transform.rotation", "xyzw"),
            ("static", None),
        ),
    ),
    # Images: `since_previous_ns` is left empty, as the per-message path leaves it (ingest fills it in as frames
    # stream by); the pixels are sliced out of the payloads, one copy into the column.
    "sensor_msgs/msg/Image": _TypeSpec(
        None,
        (
            *_STAMP_FRAME,
            ("null", None),
            ("null", None),
            ("str", "encoding"),
            ("i32", "width"),
            ("i32", "height"),
            ("bool", "is_bigendian"),
            ("i32", "step"),
            ("bytes", "data"),
        ),
    ),
    "sensor_msgs/msg/CompressedImage": _TypeSpec(
        None,
        (*_STAMP_FRAME, ("null", None), ("str", "format"), *[("null", None)] * 5, ("bytes", "data")),
    ),
    "sensor_msgs/msg/CameraInfo": _TypeSpec(
        None,
        (
            *_STAMP_FRAME,
            ("i32", "width"),
            ("i32", "height"),
            ("str", "distortion_model"),
            ("f64s", "d"),
            ("f64s", "k"),
            ("f64s", "r"),
            ("f64s", "p"),
        ),
    ),
}
SUPPORTED: frozenset[str] = frozenset(_TYPES)


# --- the definition, compiled once per schema text --------------------------------------------------


@dataclass(frozen=True)
class _Field:
    name: str
    prim: str | None  # a key of _PRIMITIVES, "string", or None for a nested message
    fields: tuple[_Field, ...]  # a nested message's fields
    array: int | None  # None: one value; _SEQUENCE: uint32 count first; n: exactly n

    @cached_property
    def min_size(self) -> int:
        """Fewest bytes one element can take: bounds the counts read from damaged payloads."""
        if self.prim == _STRING:
            return 4
        if self.prim is not None:
            return _PRIMITIVES[self.prim][0]
        return max(1, sum(4 if f.array == _SEQUENCE else (f.array or 1) * f.min_size for f in self.fields))


@dataclass(frozen=True)
class _Layout:
    fields: tuple[_Field, ...]
    want: dict[str, str]  # leaf path -> how to collect it: num, str, nums (numeric array), strs


def _compile(schema_name: str, text: str) -> tuple[_Field, ...]:
    """The definition as mcap_ros2 resolves it (same parser, same Time default, same name lookup)."""
    try:  # private to mcap_ros2; if a later version moves it, bulk decoding is simply off
        from mcap_ros2._dynamic import TimeDefinition, _for_each_msgdef
    except ImportError as e:
        raise _Misfit from e
    msgdefs = {"builtin_interfaces/Time": TimeDefinition, "builtin_interfaces/Duration": TimeDefinition}

    def add(name: str, short: str, spec: object) -> None:
        msgdefs[name] = msgdefs[short] = spec

    _for_each_msgdef(schema_name, text, add)

    def fields_of(spec: object, depth: int) -> tuple[_Field, ...]:
        if depth > 16:  # recursive or absurdly deep definitions
            raise _Misfit
        out = []
        for f in spec.fields:
            t = f.type
            fixed = t.is_array and t.is_fixed_size_array() and t.array_size is not None
            array = (t.array_size if fixed else _SEQUENCE) if t.is_array else None
            if t.is_primitive_type():
                if t.type != _STRING and t.type not in _PRIMITIVES:  # wstring: mcap_ros2 cannot read it either
                    raise _Misfit
                out.append(_Field(f.name, t.type, (), array))
            else:
                nested = msgdefs.get(f"{t.pkg_name}/{t.type}")
                if nested is None:
                    raise _Misfit
                out.append(_Field(f.name, None, fields_of(nested, depth + 1), array))
        return tuple(out)

    if schema_name not in msgdefs:
        raise _Misfit
    return fields_of(msgdefs[schema_name], 0)


def _leaf(fields: tuple[_Field, ...], path: str, rows: str | None) -> _Field:
    """The field at a dotted path; only the type's row array may be crossed on the way."""
    parts, done = path.split("."), []
    for i, name in enumerate(parts):
        field = next((f for f in fields if f.name == name), None)
        if field is None:
            raise _Misfit
        done.append(name)
        if i == len(parts) - 1:
            return field
        if field.prim is not None or (field.array is not None and ".".join(done) != rows):
            raise _Misfit
        fields = field.fields
    raise _Misfit


def _want(schema_name: str, fields: tuple[_Field, ...]) -> dict[str, str]:
    """Check the definition has what the table needs, with types the slow path converts the same way."""
    spec, want = _TYPES[schema_name], {}
    if spec.rows is not None:
        top = _leaf(fields, spec.rows, None)
        if top.prim is not None or top.array is None:
            raise _Misfit
    for kind, path in spec.columns:
        if kind in ("static", "null"):
            continue
        if kind == "stamp":
            for part in ("sec", "nanosec"):
                f = _leaf(fields, f"{path}.{part}", spec.rows)
                if f.prim not in _SMALL_INTS or f.array is not None:
                    raise _Misfit
                want[f"{path}.{part}"] = "num"
            continue
        f = _leaf(fields, path, spec.rows)
        ok = {
            "f64": f.prim in _FLOATS and f.array is None,
            "i32": f.prim in _SMALL_INTS and f.array is None,
            "bool": f.prim in _SMALL_INTS and f.array is None,
            "str": f.prim == _STRING and f.array is None,
            "f64s": f.prim in _FLOATS and f.array is not None,
            "strs": f.prim == _STRING and f.array is not None,
            "bytes": f.prim == "uint8" and f.array is not None,  # mcap_ros2 reads uint8[] as bytes
        }[kind]
        if not ok:
            raise _Misfit
        want[path] = {"f64": "num", "i32": "num", "bool": "num", "str": "str", "f64s": "nums", "strs": "strs"}.get(
            kind, kind
        )
    return want


@lru_cache(maxsize=256)
def _layout(schema_name: str, definition: bytes | None) -> _Layout | None:
    if schema_name not in _TYPES:
        return None
    if definition is None:
        from schemas.ros2 import message_definition  # the project's own definitions, as our recorder writes them

        text = message_definition(schema_name)
    else:
        try:
            text = definition.decode()
        except UnicodeDecodeError:
            return None
    try:
        fields = _compile(schema_name, text)
        return _Layout(fields, _want(schema_name, fields))
    except Exception:  # any definition mcap_ros2 would not parse, or one whose fields do not fit the table
        return None


# --- reading: one cursor per message, or per element of a sequence of messages ----------------------


class _Cursors:
    """Read positions, relative to each message's first byte after the header, with the message's bounds."""

    __slots__ = ("base", "limit", "pos")

    def __init__(self, base: np.ndarray, limit: np.ndarray, pos: np.ndarray) -> None:
        self.base, self.limit, self.pos = base, limit, pos

    def subset(self, mask: np.ndarray | None) -> _Cursors:
        if mask is None:
            return _Cursors(self.base, self.limit, self.pos.copy())
        return _Cursors(self.base[mask], self.limit[mask], self.pos[mask])

    def merge(self, mask: np.ndarray | None, sub: _Cursors) -> None:
        if mask is None:
            self.pos = sub.pos
        else:
            self.pos[mask] = sub.pos


class _Reader:
    """The channel's payloads in one buffer, each starting 4 bytes before an 8-byte boundary.

    So the CDR alignment origin (the byte after the header) of every message is 8-aligned, every
    aligned field is aligned in the buffer too, and a field is one element of a typed view.
    """

    def __init__(self, raw: bytes, little: bool, layout: _Layout, rows_path: str | None) -> None:
        order = "<" if little else ">"
        self.views = {p: np.frombuffer(raw, np.dtype(order + k)) for p, (_, k) in _PRIMITIVES.items()}
        self.bytes = self.views["uint8"]
        self.want, self.rows_path = layout.want, rows_path
        self.values: dict[str, list[tuple]] = {}  # path -> what was read, in chunks (see walk)
        self.row_counts: np.ndarray | None = None  # elements of the row array, per message

    def take(self, c: _Cursors, prim: str) -> np.ndarray:
        size = _PRIMITIVES[prim][0]
        pos = c.pos if size == 1 else (c.pos + (size - 1)) & -size
        end = pos + size
        if (end > c.limit).any():
            raise _Misfit
        values = self.views[prim][(c.base + pos) >> _SHIFT[size]]
        c.pos = end
        if values.dtype.byteorder == ">":
            values = values.astype(values.dtype.newbyteorder("="))
        return values != 0 if prim == "bool" else values

    def skip(self, c: _Cursors, prim: str) -> None:
        size = _PRIMITIVES[prim][0]
        c.pos = (c.pos if size == 1 else (c.pos + (size - 1)) & -size) + size

    def string(self, c: _Cursors) -> tuple[np.ndarray, np.ndarray]:
        """Absolute start and byte count of each cursor's string (without the NUL)."""
        length = self.take(c, "uint32").astype(np.int64)
        start = c.base + c.pos
        c.pos = c.pos + length
        if (c.pos > c.limit).any():  # mcap_ros2 slices silently; anything read after it would fail
            raise _Misfit
        return start, np.maximum(length - 1, 0)

    def count(self, c: _Cursors, field: _Field) -> np.ndarray:
        if field.array == _SEQUENCE:
            counts = self.take(c, "uint32").astype(np.int64)
        else:
            counts = np.full(len(c.pos), field.array, np.int64)
        if (counts * field.min_size > c.limit - c.pos).any():  # more elements than bytes left
            raise _Misfit
        return counts

    def walk(self, fields: tuple[_Field, ...], c: _Cursors, prefix: str, rows: object) -> None:
        """Read (or step over) `fields` at every cursor; keep what `want` names under its path.

        `rows`: None at the top (row i is message i), row numbers inside the row array, _SKIP elsewhere.
        """
        if not fields:
            self.skip(c, "uint8")
            self.check(c)
            return
        for f in fields:
            path = prefix + f.name
            want = None if rows is _SKIP else self.want.get(path)
            if f.array is not None and f.prim is not None and f.prim != _STRING:
                self.numbers(f, c, path, want, rows)
            elif f.array is not None:
                self.elements(f, c, path, want, rows)
            elif f.prim is None:
                self.walk(f.fields, c, path + ".", rows)
            elif f.prim == _STRING:
                start, size = self.string(c)
                if want:
                    self.values.setdefault(path, []).append((rows, start, size))
            elif want:
                self.values.setdefault(path, []).append((rows, self.take(c, f.prim)))
            else:
                self.skip(c, f.prim)

    def numbers(self, f: _Field, c: _Cursors, path: str, want: str | None, rows: object) -> None:
        counts = self.count(c, f)
        size = _PRIMITIVES[f.prim][0]
        pos = c.pos
        if size > 1:  # element-wise alignment: nothing moves for an empty array
            pos = np.where(counts > 0, (pos + (size - 1)) & -size, pos)
        end = pos + counts * size
        if (end > c.limit).any():
            raise _Misfit
        if want == "bytes":  # where each message's bytes lie: sliced out whole when the column is built
            if rows is not None:
                raise _Misfit
            self.values[path] = [(c.base + pos, counts)]
        elif want:
            if rows is not None:
                raise _Misfit
            offsets = np.zeros(len(counts) + 1, np.int64)
            np.cumsum(counts, out=offsets[1:])
            first = (c.base + pos) >> _SHIFT[size]
            index = np.repeat(first - offsets[:-1], counts) + np.arange(offsets[-1])
            values = self.views[f.prim][index]
            if values.dtype.byteorder == ">":
                values = values.astype(values.dtype.newbyteorder("="))
            self.values[path] = [(offsets, values)]
        c.pos = end

    def elements(self, f: _Field, c: _Cursors, path: str, want: str | None, rows: object) -> None:
        """Strings or messages, one element at a time for all cursors that still have one."""
        counts = self.count(c, f)
        is_rows = rows is None and f.prim is None and path == self.rows_path
        if is_rows:
            self.row_counts = counts
        keep = is_rows or (want and f.prim == _STRING)
        if keep and rows is not None:
            raise _Misfit
        offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        if keep and f.prim == _STRING:
            starts, sizes = np.zeros(offsets[-1], np.int64), np.zeros(offsets[-1], np.int64)
        most = int(counts.max(initial=0))
        for j in range(most):
            mask = None if counts.min() > j else counts > j
            sub = c.subset(mask)
            element = offsets[:-1] + j if mask is None else offsets[:-1][mask] + j
            if f.prim == _STRING:
                start, size = self.string(sub)
                if keep:
                    starts[element], sizes[element] = start, size
            else:
                self.walk(f.fields, sub, path + ".", element if is_rows else _SKIP)
            c.merge(mask, sub)
        if keep and f.prim == _STRING:
            self.values[path] = [(offsets, starts, sizes)]

    @staticmethod
    def check(c: _Cursors) -> None:
        if (c.pos > c.limit).any():
            raise _Misfit

    # --- Arrow columns from what was kept ----------------------------------------------------------

    def number_column(self, path: str, n: int) -> np.ndarray:
        chunks = self.values.get(path, [])  # none: no rows at all
        if len(chunks) == 1 and chunks[0][0] is None:
            return chunks[0][1]
        out = np.zeros(n, chunks[0][1].dtype if chunks else np.int64)
        for rows, values in chunks:
            out[rows] = values
        return out

    def string_column(self, path: str, n: int) -> pa.Array:
        chunks = self.values.get(path, [])
        if len(chunks) == 1 and chunks[0][0] is None:
            _, start, size = chunks[0]
        else:
            start, size = np.zeros(n, np.int64), np.zeros(n, np.int64)
            for rows, s, k in chunks:
                start[rows], size[rows] = s, k
        return self.strings(start, size)

    def binary_column(self, path: str) -> pa.Array:
        [(start, size)] = self.values[path]
        offsets = np.zeros(len(size) + 1, np.int64)
        np.cumsum(size, out=offsets[1:])
        whole = memoryview(self.bytes)
        data = b"".join(whole[a:b] for a, b in zip(start.tolist(), (start + size).tolist(), strict=True))
        return pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), len(size), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )

    def strings(self, start: np.ndarray, size: np.ndarray) -> pa.Array:
        offsets = np.zeros(len(size) + 1, np.int64)
        np.cumsum(size, out=offsets[1:])
        if offsets[-1] > _INT32_MAX:
            raise _Misfit
        data = self.bytes[np.repeat(start - offsets[:-1], size) + np.arange(offsets[-1])]
        array = pa.StringArray.from_buffers(len(size), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data))
        if data.size and data.max() >= 0x80:  # Python's strict UTF-8 decode and Arrow's check reject the same
            try:
                array.validate(full=True)
            except pa.ArrowInvalid as e:
                raise _Misfit from e
        return array


def _list(offsets: np.ndarray, values: pa.Array, type_: pa.DataType) -> pa.Array:
    if offsets[-1] > _INT32_MAX:
        raise _Misfit
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values, type=type_)


def _concatenated(payloads: Sequence[bytes | memoryview], sizes: np.ndarray) -> tuple[bytes, np.ndarray]:
    """One buffer, each payload starting at 4 mod 8 (so its CDR origin is 8-aligned); and the starts."""
    pads = (-sizes) & 7
    parts = itertools.chain.from_iterable(zip(payloads, map(_PADS.__getitem__, pads.tolist()), strict=True))
    raw = b"".join(itertools.chain((_PADS[4],), parts, (_PADS[4],)))
    starts = np.empty(len(sizes), np.int64)
    starts[0] = 4
    np.cumsum((sizes + pads)[:-1], out=starts[1:])
    starts[1:] += 4
    return raw, starts


def decode_table(
    schema_name: str,
    topic: str,
    log_times: np.ndarray,
    payloads: Sequence[bytes | memoryview],
    definition: bytes | None = None,
) -> pa.Table | None:
    """The lake table of one channel's messages, equal to what the per-message path builds; or None.

    `log_times`: one MCAP log time per payload (integers). `definition`: the channel's schema text
    (`Schema.data`); pass it, since files may define a type otherwise than we do. Without it the
    project's own definition (`schemas.ros2.message_definition`) is assumed. None: decode the
    channel message by message instead (see the module docstring for when).
    """
    layout = _layout(schema_name, definition)
    if layout is None:
        return None
    table, spec = ROS2_TABLES[schema_name], _TYPES[schema_name]
    n = len(payloads)
    times = np.asarray(log_times)
    if times.shape != (n,):
        raise ValueError(f"{len(times)} log times for {n} payloads")
    if n == 0:
        return table_from_rows(table, [])
    if times.dtype.kind not in "iu" or (times.dtype.kind == "u" and times.max() > np.iinfo(np.int64).max):
        return None
    times = times.astype(np.int64, copy=False)
    sizes = np.fromiter(map(len, payloads), np.int64, n)
    if sizes.min() < 4:
        return None
    raw, starts = _concatenated(payloads, sizes)
    kinds = np.frombuffer(raw, np.uint8)[starts + 1] & 1
    if kinds.min() != kinds.max():
        return None
    reader = _Reader(raw, bool(kinds[0]), layout, spec.rows)
    cursors = _Cursors(starts + 4, sizes - 4, np.zeros(n, np.int64))
    try:
        reader.walk(layout.fields, cursors, "", None)
        reader.check(cursors)
        return _assemble(reader, table, spec, topic, times, n)
    except _Misfit:
        return None


def _assemble(reader: _Reader, table: str, spec: _TypeSpec, topic: str, times: np.ndarray, n: int) -> pa.Table:
    if spec.rows is not None:
        counts = reader.row_counts
        times, n = np.repeat(times, counts), int(counts.sum())
    try:
        encoded = topic.encode()
    except UnicodeEncodeError as e:
        raise _Misfit from e
    if len(encoded) * n > _INT32_MAX:
        raise _Misfit
    topics = pa.StringArray.from_buffers(
        n, pa.py_buffer(np.arange(n + 1, dtype=np.int32) * len(encoded)), pa.py_buffer(encoded * n)
    )
    schema = TABLES[table]
    columns = [pa.array(times), topics]
    for (kind, path), field in zip(spec.columns, list(schema)[2:], strict=True):
        if kind == "stamp":
            sec = reader.number_column(f"{path}.sec", n).astype(np.int64)
            columns.append(pa.array(sec * 1_000_000_000 + reader.number_column(f"{path}.nanosec", n)))
        elif kind == "f64":
            columns.append(pa.array(reader.number_column(path, n).astype(np.float64, copy=False)))
        elif kind == "i32":
            values = reader.number_column(path, n).astype(np.int64)
            if n and (values.max() > _INT32_MAX or values.min() < -_INT32_MAX - 1):  # table_from_rows would raise
                raise _Misfit
            columns.append(pa.array(values.astype(np.int32)))
        elif kind == "bool":
            columns.append(pa.array(reader.number_column(path, n) != 0))
        elif kind == "null":
            columns.append(pa.nulls(n, field.type))
        elif kind == "bytes":
            columns.append(reader.binary_column(path))
        elif kind == "str":
            columns.append(reader.string_column(path, n))
        elif kind == "f64s":
            [(offsets, values)] = reader.values[path]
            columns.append(_list(offsets, pa.array(values.astype(np.float64, copy=False)), field.type))
        elif kind == "strs":
            [(offsets, starts, sizes)] = reader.values[path]
            columns.append(_list(offsets, reader.strings(starts, sizes), field.type))
        else:  # static
            columns.append(pa.array(np.full(n, is_static_tf(topic))))
    return pa.Table.from_arrays(columns, schema=schema)
