"""`schemas.cdr_bulk.decode_table` builds the very table the per-message path builds (mcap_ros2's decoder,
`CONVERTERS`, `table_from_rows`), bit for bit, on our recordings, on real ROS 2 bags and on random
messages of several definitions and both byte orders; and on any payload it is not sure of (truncated,
corrupted, bad UTF-8, ...) it answers None, never other rows."""

from __future__ import annotations

import io
import math
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from mcap.records import Message, Schema
from mcap.well_known import MessageEncoding
from mcap_ros2._cdr import CdrWriter, EncapsulationKind
from mcap_ros2._dynamic import TimeDefinition, _for_each_msgdef, _write_complex_type

from datasets.mcap_reader import SalvagingReader
from datasets.recording import EpisodeWriter
from pipelines.staging import ros2_decoder
from schemas import messages as m
from schemas.cdr_bulk import SUPPORTED, decode_table
from schemas.episode import EpisodeMetadata
from schemas.lake import ROS2_TABLES, table_from_rows
from schemas.ros2 import message_definition
from schemas.ros2_rows import CONVERTERS
from schemas.topics import CAMERAS
from tests.conftest import T0

EXTERNAL = Path(__file__).resolve().parents[2] / "shared" / "external"
# The channels of supported types in the external bags (see its README): all must be compared.
EXTERNAL_CHANNELS = {
    ("jackal_imu_odom.mcap", "/imu/data"),
    ("jackal_imu_odom.mcap", "/jackal_velocity_controller/odom"),
    ("nav2_turtlebot.mcap", "/odom"),
    ("nav2_turtlebot.mcap", "/tf"),
    ("nav2_turtlebot.mcap", "/tf_static"),
    ("turtlebot3_sim.mcap", "/cmd_vel"),
    ("turtlebot3_sim.mcap", "/imu"),
    ("turtlebot3_sim.mcap", "/odom"),
    ("turtlebot3_sim.mcap", "/joint_states"),
}
TOPIC_OF = {
    "sensor_msgs/msg/Imu": "/imu",
    "nav_msgs/msg/Odometry": "/odom",
    "sensor_msgs/msg/JointState": "/joint_states",
    "geometry_msgs/msg/Twist": "/cmd_vel",
    "tf2_msgs/msg/TFMessage": "/robot_2/tf_static",
    "sensor_msgs/msg/CameraInfo": "/camera/front/camera_info",
    "sensor_msgs/msg/Image": "/camera/front/depth",
    "sensor_msgs/msg/CompressedImage": "/camera/front/image/compressed",
}
IMU = "sensor_msgs/msg/Imu"


# --- the per-message path, as ingest runs it ---------------------------------------------------------


def slow_table(name: str, definition: bytes, topic: str, log_times: Any, payloads: list[bytes]) -> pa.Table:
    """Raises where ingest would not give this channel one typed table (a payload that does not decode)."""
    decode, convert = ros2_decoder(name, definition), CONVERTERS[name]
    rows = [row for t, p in zip(log_times, payloads, strict=True) for row in convert(int(t), topic, decode(p))]
    return table_from_rows(ROS2_TABLES[name], rows)


def _same_array(a: pa.Array, b: pa.Array) -> None:
    assert a.type == b.type and len(a) == len(b) and a.is_null().equals(b.is_null())
    a, b = a.drop_null(), b.drop_null()  # images leave columns of the other image type empty
    if pa.types.is_list(a.type):
        assert pc.list_value_length(a).equals(pc.list_value_length(b))
        _same_array(a.flatten(), b.flatten())
    elif pa.types.is_floating(a.type):  # exact: the same bits, NaN payloads and -0.0 included
        assert np.array_equal(a.to_numpy().view(np.int64), b.to_numpy().view(np.int64))
    else:
        assert a.equals(b)


def assert_same_table(bulk: pa.Table | None, slow: pa.Table) -> None:
    assert bulk is not None
    assert bulk.schema.equals(slow.schema, check_metadata=True)
    assert bulk.num_rows == slow.num_rows
    for name in slow.column_names:
        _same_array(bulk[name].combine_chunks(), slow[name].combine_chunks())


def check_never_wrong(
    name: str, definition: bytes, topic: str, log_times: Any, payloads: list[bytes]
) -> pa.Table | None:
    """decode_table's answer: None wherever the slow path fails, else None or the slow path's table."""
    bulk = decode_table(name, topic, np.asarray(log_times, np.int64), payloads, definition)
    try:
        slow = slow_table(name, definition, topic, log_times, payloads)
    except Exception:
        assert bulk is None
        return None
    if bulk is not None:
        assert_same_table(bulk, slow)
    return bulk


def _channels(path: Path) -> list[tuple[Schema, str, list[Message]]]:
    """Each channel of a supported type with its messages, read as ingest reads (salvaging what it can)."""
    by_channel: dict[int, list[Message]] = defaultdict(list)
    with open(path, "rb") as f:
        reader = SalvagingReader(f)
        for record in reader.records():
            if isinstance(record, Message):
                by_channel[record.channel_id].append(record)
    out = []
    for channel_id, messages in by_channel.items():
        channel = reader.channels.get(channel_id)
        schema = channel and reader.schemas.get(channel.schema_id)
        if schema and schema.name in SUPPORTED and channel.message_encoding == MessageEncoding.CDR:
            out.append((schema, channel.topic, messages))
    return out


def assert_channel_matches(schema: Schema, topic: str, messages: list[Message]) -> None:
    times, payloads = [x.log_time for x in messages], [x.data for x in messages]
    bulk = decode_table(schema.name, topic, np.array(times, np.int64), payloads, schema.data)
    assert_same_table(bulk, slow_table(schema.name, schema.data, topic, times, payloads))


# --- (a) our own recordings ------------------------------------------------------------------------

FRAMES = (
    "",
    "a",
    "imu",
    "odom",
    "base_link",
    "imu_link_7",
    "robot_2/base_footprint",
    "caméra",
    "机器人_link",
    "x" * 33,
)
SPECIAL = (0.0, -0.0, 1.0, -2.5, 1e300, -1e-310, 5e-324, math.inf, -math.inf, math.nan)


def _floats(rng: np.random.Generator, n: int) -> tuple[float, ...]:
    return tuple(float(rng.choice(SPECIAL)) if rng.random() < 0.3 else float(rng.normal(0, 10)) for _ in range(n))


def _frame(rng: np.random.Generator) -> str:
    return str(rng.choice(FRAMES))


def _transform(rng: np.random.Generator, t: int) -> m.Transform:
    return m.Transform(t, _frame(rng), _frame(rng), _floats(rng, 3), _floats(rng, 4))


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An episode written by our recorder, with frame ids of every alignment and lists of every length."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("cdr_bulk") / "episode.mcap"
    meta = EpisodeMetadata("robot-1", "office-0", "office", 0, 0, "0.1.0", 4, 3)
    writer = EpisodeWriter(path, meta, start_ns=T0, chunk_size=8192)
    writer.write("tf_static", m.TFMessage(T0, tuple(_transform(rng, T0) for _ in range(5))))
    for i in range(150):
        t = T0 + i * 10_000_000 - (int(rng.integers(0, 3)) * 1_000_000_000 if i % 7 else 0)
        writer.write("clock", m.Clock(t))
        writer.write("imu", m.Imu(t, _frame(rng), _floats(rng, 4), _floats(rng, 3), _floats(rng, 3)))
        joints = int(rng.integers(0, 5))
        names = tuple(_frame(rng) for _ in range(joints))
        writer.write("wheels", m.WheelState(t, names, _floats(rng, joints), _floats(rng, int(rng.integers(0, 3)))))
        odom = m.Odometry(t, _frame(rng), _frame(rng), *(_floats(rng, k) for k in (3, 4, 3, 3)))
        writer.write("odom" if i % 2 else "ground_truth", odom)
        writer.write("tf", m.TFMessage(t, tuple(_transform(rng, t) for _ in range(int(rng.integers(0, 4))))))
        writer.write("cmd_vel", m.Twist(t, _floats(rng, 3), _floats(rng, 3)))
        if i % 3 == 0:
            d = _floats(rng, int(rng.choice([0, 4, 5, 8])))
            info = m.CameraInfo(
                t, _frame(rng), 640, 480, _floats(rng, 9), _frame(rng), d, _floats(rng, 9), _floats(rng, 12)
            )
            writer.write(f"camera_info_{CAMERAS[i % len(CAMERAS)]}", info)
            # Pixels of every length, odd ones included, so that what follows them is unaligned.
            camera, size = CAMERAS[(i // 3) % len(CAMERAS)], int(rng.choice([0, 1, 3, 4, 7, 4096]))
            writer.write(f"image_{camera}", m.CompressedImage(t, _frame(rng), _frame(rng), rng.bytes(size)))
            width = int(rng.integers(0, 5))
            depth = m.DepthImage(t, _frame(rng), width, 1, rng.bytes(4 * width))
            writer.write(f"depth_{camera}", depth)
    writer.close()
    return path


def test_recording_decodes_as_the_slow_path(recording: Path) -> None:
    channels = _channels(recording)
    assert {schema.name for schema, _, _ in channels} == SUPPORTED
    for schema, topic, messages in channels:
        assert_channel_matches(schema, topic, messages)


# --- (b) real ROS 2 bags and the MCAP conformance files ---------------------------------------------


@pytest.mark.skipif(not EXTERNAL.is_dir(), reason=f"no external logs under {EXTERNAL}")
def test_external_logs_decode_as_the_slow_path() -> None:
    compared = set()
    files = sorted(EXTERNAL.rglob("*.mcap"))
    assert len(files) > 400
    for path in files:
        try:
            channels = _channels(path)
        except Exception:  # nothing readable in it
            continue
        for schema, topic, messages in channels:
            assert_channel_matches(schema, topic, messages)
            compared.add((path.name, topic))
    assert compared == EXTERNAL_CHANNELS


# --- random messages of several definitions, both byte orders ----------------------------------------


def _msgdefs(name: str, text: str) -> dict[str, Any]:
    defs: dict[str, Any] = {"builtin_interfaces/Time": TimeDefinition, "builtin_interfaces/Duration": TimeDefinition}

    def add(full: str, short: str, spec: Any) -> None:
        defs[full] = defs[short] = spec

    _for_each_msgdef(name, text, add)
    return defs


_INT_RANGES = {"int8": 7, "uint8": 8, "char": 7, "byte": 8, "int16": 15, "uint16": 16, "int32": 31, "uint32": 32}
_INT_RANGES |= {"int64": 63, "uint64": 64}


def _random_value(rng: np.random.Generator, type_name: str) -> Any:
    if type_name == "float64":
        return _floats(rng, 1)[0]
    if type_name == "float32":
        return float(np.float32(rng.normal(0, 100)))
    if type_name == "string":
        return _frame(rng)
    if type_name == "bool":
        return bool(rng.integers(0, 2))
    bits = _INT_RANGES[type_name]
    lo = -(2**bits) if type_name.startswith("int") or type_name == "char" else 0
    hi = 2**bits - 1
    return [lo, hi, 0, 1, int(rng.integers(max(lo, -(2**62)), min(hi, 2**62)))][int(rng.integers(0, 5))]


def _random_message(rng: np.random.Generator, spec: Any, defs: dict[str, Any]) -> dict[str, Any]:
    msg = {}
    for field in spec.fields:
        t = field.type
        n = (t.array_size if t.is_fixed_size_array() else int(rng.integers(0, 4))) if t.is_array else None
        if t.is_primitive_type():
            one = lambda t=t: _random_value(rng, t.type)  # noqa: E731
        else:
            one = lambda t=t: _random_message(rng, defs[f"{t.pkg_name}/{t.type}"], defs)  # noqa: E731
        msg[field.name] = one() if n is None else [one() for _ in range(n)]
    return msg


def encode(name: str, text: str, msg: dict[str, Any], kind: EncapsulationKind = EncapsulationKind.CDR_LE) -> bytes:
    """mcap_ros2's own CDR writer, in either byte order (its public Writer only writes little-endian)."""
    defs, out = _msgdefs(name, text), io.BytesIO()
    _write_complex_type(name, defs[name].fields, defs, msg, CdrWriter(out, kind))
    return out.getvalue()


def _section(type_name: str) -> str:
    return f"{'=' * 80}\nMSG: {type_name}\n"


def variants(name: str) -> dict[str, str]:
    """Definitions one type may come with: ours, ours without Time (mcap_ros2 then reads `uint32 sec`),
    a ROS 1-like Header (an extra field before the stamp), float32 vectors and bounded strings."""
    ours = message_definition(name)
    time = _section("builtin_interfaces/Time") + "int32 sec\nuint32 nanosec\n"
    out = {"ours": ours, "time_u32": ours.replace(time, "")}
    if "MSG: std_msgs/Header\n" in ours:
        out["ros1_header"] = ours.replace("MSG: std_msgs/Header\n", "MSG: std_msgs/Header\nuint32 seq\n")
    if "MSG: geometry_msgs/Vector3\n" in ours:
        out["vector3_f32"] = ours.replace(
            "MSG: geometry_msgs/Vector3\nfloat64 x\nfloat64 y\nfloat64 z",
            "MSG: geometry_msgs/Vector3\nfloat32 x\nfloat32 y\nfloat32 z",
        )
    out["bounded"] = ours.replace("string frame_id", "string<=64 frame_id").replace("[]", "[<=8]")
    return {k: v for k, v in out.items() if k == "ours" or v != ours}


def random_channel(
    name: str, text: str, n: int, seed: int, kind=EncapsulationKind.CDR_LE
) -> tuple[list[int], list[bytes]]:
    rng = np.random.default_rng(seed)
    defs = _msgdefs(name, text)
    messages = [_random_message(rng, defs[name], defs) for _ in range(n)]
    for msg in messages:
        if name in ("sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/Image"):  # int32 columns: larger are another test's
            msg["width"], msg["height"] = int(rng.integers(0, 2**31)), int(rng.integers(0, 2**31))
        if name == "sensor_msgs/msg/Image":
            msg["step"] = int(rng.integers(0, 2**31))
    return [T0 + i for i in range(n)], [encode(name, text, msg, kind) for msg in messages]


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_random_messages_of_every_definition_and_byte_order(name: str) -> None:
    assert "time_u32" in variants(name) or name == "geometry_msgs/msg/Twist"
    for seed, text in enumerate(variants(name).values()):
        for kind in (EncapsulationKind.CDR_LE, EncapsulationKind.CDR_BE):
            times, payloads = random_channel(name, text, 40, seed, kind)
            bulk = decode_table(name, TOPIC_OF[name], np.array(times), payloads, text.encode())
            assert_same_table(bulk, slow_table(name, text.encode(), TOPIC_OF[name], times, payloads))


def test_stamps_follow_the_definition_of_time() -> None:
    """With `int32 sec` a stamp past 2038 is negative, with mcap_ros2's default `uint32 sec` it is not."""
    ours = message_definition(IMU)
    u32 = variants(IMU)["time_u32"]
    msg = _random_message(np.random.default_rng(0), _msgdefs(IMU, ours)[IMU], _msgdefs(IMU, ours))
    msg["header"]["stamp"] = {"sec": 2**32 - 2, "nanosec": 999_999_999}
    payload = encode(IMU, u32, msg)
    stamps = {}
    for variant, text in (("ours", ours), ("time_u32", u32)):
        table = decode_table(IMU, "/imu", np.array([T0]), [payload], text.encode())
        assert_same_table(table, slow_table(IMU, text.encode(), "/imu", [T0], [payload]))
        stamps[variant] = table["stamp_ns"][0].as_py()
    assert stamps == {"ours": -2 * 10**9 + 999_999_999, "time_u32": (2**32 - 2) * 10**9 + 999_999_999}


def test_the_default_definition_is_ours() -> None:
    times, payloads = random_channel(IMU, message_definition(IMU), 20, 3)
    assert_same_table(
        decode_table(IMU, "/imu", np.array(times), payloads),
        slow_table(IMU, message_definition(IMU).encode(), "/imu", times, payloads),
    )


def test_memoryview_payloads() -> None:
    text = message_definition("tf2_msgs/msg/TFMessage")
    times, payloads = random_channel("tf2_msgs/msg/TFMessage", text, 20, 6)
    views = [memoryview(b"xx" + p)[2:] for p in payloads]
    assert_same_table(
        decode_table("tf2_msgs/msg/TFMessage", "/tf", np.array(times), views, text.encode()),
        slow_table("tf2_msgs/msg/TFMessage", text.encode(), "/tf", times, payloads),
    )


# --- odd but valid layouts ---------------------------------------------------------------------------


def _imu_payload(
    frame_length: int, frame: bytes, values: tuple[float, ...], header: bytes = b"\x00\x01\x00\x00"
) -> bytes:
    """An Imu laid out by hand (not by mcap_ros2's writer): a string length of our choosing, then
    padding up to 8 counted from the byte after the encapsulation header."""
    body = struct.pack("<iII", 1, 2, frame_length) + frame
    body += b"\xaa" * (-len(body) % 8)  # padding: its value is nobody's business
    return header + body + struct.pack("<37d", *values)


def test_odd_layouts_decode_as_the_slow_path() -> None:
    text = message_definition(IMU)
    values = tuple(float(i) + 0.5 for i in range(37))
    payloads = [
        _imu_payload(0, b"", values),  # an empty string written as length 0 (some serializers do)
        _imu_payload(1, b"\x00", values),
        _imu_payload(5, b"imu1X", values),  # a terminator that is not NUL: ignored, as mcap_ros2 does
        _imu_payload(4, b"a\x00b\x00", values),  # a NUL inside the string is kept
        _imu_payload(8, "caméra\x00".encode(), values),  # length in bytes, not characters
        _imu_payload(3, b"ab\x00", values, b"\x00\x03\x00\x00"),  # PL_CDR_LE: read as little-endian CDR
        _imu_payload(3, b"ab\x00", values, b"\xff\x01\x12\x34"),  # other header bytes ignored
        _imu_payload(3, b"ab\x00", values) + b"\x00\x00\x00",  # trailing padding (Fast DDS pads to 4)
        _imu_payload(3, b"ab\x00", values) + b"junk" * 5,
    ]
    table = check_never_wrong(IMU, text.encode(), "/imu", range(len(payloads)), payloads)
    assert table is not None and table["frame_id"].to_pylist()[:5] == ["", "", "imu1", "a\x00b", "caméra"]


def test_a_last_string_cut_short_is_not_read_past_its_message() -> None:
    """mcap_ros2 slices a string that runs past the payload and keeps what is there; the bytes after
    it in our buffer belong to the next message, so that must not be read (None is the answer)."""
    name = "nav_msgs/msg/Odometry"
    ours = message_definition(name)
    last = ours.replace("string child_frame_id\n", "", 1).replace(
        "TwistWithCovariance twist\n", "TwistWithCovariance twist\nstring child_frame_id\n", 1
    )
    assert last != ours and last.count("string child_frame_id") == 1
    defs = _msgdefs(name, last)
    msg = _random_message(np.random.default_rng(4), defs[name], defs)
    msg["child_frame_id"] = "base_link_with_a_long_name"
    whole = encode(name, last, msg)
    for cut in (1, 5, 20):
        payloads = [whole[:-cut], whole]
        slow = slow_table(name, last.encode(), "/odom", [0, 1], payloads)
        assert slow["child_frame_id"][0].as_py() == "base_link_with_a_long_name"[: 27 - cut]  # cut, or its NUL
        assert check_never_wrong(name, last.encode(), "/odom", [0, 1], payloads) is None
    assert check_never_wrong(name, last.encode(), "/odom", [0, 1], [whole, whole]) is not None


def test_padding_and_header_options_of_every_type() -> None:
    for name in sorted(SUPPORTED):
        text = message_definition(name)
        times, payloads = random_channel(name, text, 12, 11)
        odd = [p[:2] + bytes([i, 255 - i]) + p[4:] + b"\x01" * (i % 8) for i, p in enumerate(payloads)]
        assert check_never_wrong(name, text.encode(), TOPIC_OF[name], times, odd) is not None


# --- never other rows --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_truncated_payloads_give_none(name: str) -> None:
    text = message_definition(name).encode()
    times, payloads = random_channel(name, text.decode(), 3, 5)
    assert check_never_wrong(name, text, "/t", times, payloads) is not None
    for cut in range(len(payloads[1])):
        damaged = [payloads[0], payloads[1][:cut], payloads[2]]
        assert check_never_wrong(name, text, "/t", times, damaged) is None  # every field of these types is read


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_corrupt_payloads_give_none_or_the_slow_paths_rows(name: str) -> None:
    """4-byte words overwritten (hitting the length and count prefixes), random bytes, random payloads."""
    text = message_definition(name).encode()
    times, payloads = random_channel(name, text.decode(), 3, 9)
    rng = np.random.default_rng(1)
    target = payloads[1]
    mutants = []
    words = range(4, len(target) - 3, 4)  # the first 160 bytes word by word, a sample beyond
    for at in [w for w in words if w < 160] + sorted(rng.choice([w for w in words if w >= 160] or [4], 24)):
        for word in (b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", struct.pack("<I", int(rng.integers(0, 40)))):
            mutants.append(target[:at] + word + target[at + 4 :])
    for _ in range(60):
        at = int(rng.integers(0, len(target)))
        mutants.append(target[:at] + bytes([int(rng.integers(0, 256))]) + target[at + 1 :])
    mutants += [rng.bytes(int(rng.integers(0, 200))) for _ in range(30)]
    survived = 0
    for mutant in mutants:
        survived += check_never_wrong(name, text, "/t", times, [payloads[0], mutant, payloads[2]]) is not None
    assert survived > 0  # some corruptions (of values, not layout) still decode, and must match


def test_invalid_utf8_gives_none() -> None:
    values = tuple(0.0 for _ in range(37))
    for bad in (b"\xff\x00", b"\xed\xa0\x80\x00", b"\xc0\x80\x00", b"ab\xe2\x82\x00"):
        payloads = [_imu_payload(4, b"imu\x00", values), _imu_payload(len(bad), bad, values)]
        with pytest.raises(UnicodeDecodeError):
            slow_table(IMU, message_definition(IMU).encode(), "/imu", [0, 1], payloads)
        assert decode_table(IMU, "/imu", np.array([0, 1]), payloads, message_definition(IMU).encode()) is None


@pytest.mark.parametrize("name", ["sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/Image"])
def test_image_sizes_beyond_int32_give_none(name: str) -> None:
    text = message_definition(name)
    msg = _random_message(np.random.default_rng(0), _msgdefs(name, text)[name], _msgdefs(name, text))
    msg["width"] = 2**31
    payload = encode(name, text, msg)
    with pytest.raises((OverflowError, pa.ArrowInvalid)):
        slow_table(name, text.encode(), "/c", [0], [payload])
    assert decode_table(name, "/c", np.array([0]), [payload], text.encode()) is None


def test_what_it_does_not_decode_gives_none() -> None:
    imu = message_definition(IMU)
    times, payloads = random_channel(IMU, imu, 4, 2)
    _, big = random_channel(IMU, imu, 1, 2, EncapsulationKind.CDR_BE)
    assert decode_table(IMU, "/imu", np.array(times[:2]), [payloads[0], big[0]], imu.encode()) is None  # mixed orders
    huge = np.array([2**63, 1], np.uint64)
    assert decode_table(IMU, "/imu", huge, payloads[:2], imu.encode()) is None  # t_ns beyond int64
    assert decode_table(IMU, "/imu", np.array([0]), [b"\x00\x01\x00"], imu.encode()) is None  # no room for a header
    int_orientation = imu.replace(
        "MSG: geometry_msgs/Quaternion\nfloat64 x 0", "MSG: geometry_msgs/Quaternion\nint32 x 0"
    )
    assert int_orientation != imu
    assert decode_table(IMU, "/imu", np.array(times), payloads, int_orientation.encode()) is None  # converts otherwise
    assert decode_table(IMU, "/imu", np.array(times), payloads, b"not a ros2msg definition [") is None
    for other in ("rosgraph_msgs/msg/Clock", "sensor_msgs/msg/LaserScan", "nope/msg/Nope"):
        assert decode_table(other, "/x", np.array(times), payloads) is None


def test_rosgraph_clock_has_no_table() -> None:
    """Clock is not decoded here because ingest keeps it raw: it has no lake table."""
    assert "rosgraph_msgs/msg/Clock" not in ROS2_TABLES and ROS2_TABLES.keys() >= SUPPORTED


def test_empty_channels_and_empty_tf_messages() -> None:
    name = "tf2_msgs/msg/TFMessage"
    text = message_definition(name)
    empty = encode(name, text, {"transforms": []})
    for times, payloads in (([], []), ([1, 2], [empty, empty])):
        table = decode_table(name, "/tf", np.array(times, np.int64), payloads, text.encode())
        assert_same_table(table, slow_table(name, text.encode(), "/tf", times, payloads))
        assert table.num_rows == 0
