"""The map format: the hybrid topological-semantic map G = (V, E, L) of one site, built offline.

Layout of `data/maps/<site>/`:

    manifest.json            format version, build info, and the SHA-256 and size of every other file
    nodes.parquet            V: keyframes, their camera poses in `map` and global image descriptors
    edges.parquet            E: undirected edges for routing
    landmarks.parquet        L: semantic landmarks with attributes and a text embedding
    node_landmarks.parquet   which node sees which landmark, and where in its image
    node_features.parquet    each node's SIFT keypoints that observe a 3D point, for localization without the lake
    sfm/                     the pycolmap reconstruction; the image of a registered node is named by its node_id
    versions/<n>/            earlier versions of the map, each a whole map in this layout (`astra map update` keeps
                             them); the manifest's build info `history` says which episodes and lake version each holds

A node's image is the lake row `images` with the node's `episode_id`, `image_topic` and `t_ns`. Its pose
is that of the camera's optical frame in `map` (REP-103/105), position in metres and orientation as a
unit quaternion xyzw.

Hashes in the manifest are of the bytes on disk, so a map's integrity can be checked without its key.

**Encryption.** An encrypted map stores every file but the manifest as `<name>.enc`:

    MAGIC (8 bytes) | ENCRYPTION_VERSION (1 byte) | nonce (12 bytes) | AES-256-GCM ciphertext + 16-byte tag

The associated data is the 9-byte header followed by the file's plain relative path in UTF-8 (such as
`nodes.parquet` or `sfm/points3D.bin`), so no file can stand in for another. The manifest stays
readable, since it says that the map is encrypted, and is sealed: its `seal` is an encrypted empty
message whose associated data is the rest of the manifest. Editing the manifest, or reading with
another key, fails before any file is decrypted.

**Keys.** `ASTRA_MAP_KEY` holds 32 random bytes (AES-256), written as 64 hex digits or in base64
(standard or URL-safe alphabet). `generate_key()` makes one, as does `openssl rand -base64 32`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAP_FORMAT_VERSION = 3  # 2: nodes.placed_by_odometry; 3: node_features
MANIFEST_FILE = "manifest.json"
SFM_DIR = "sfm"
VERSIONS_DIR = "versions"
KEY_ENV = "ASTRA_MAP_KEY"
KEY_BYTES = 32
MAGIC = b"ASTRAMAP"
ENCRYPTION_VERSION = 1
NONCE_BYTES = 12
ENCRYPTED_SUFFIX = ".enc"
TEXT_EMBEDDING_DIM = 384  # all-MiniLM-L6-v2, the default text encoder; another encoder may differ
EDGE_KINDS = ("sequential", "covisibility", "proximity")

_HEADER = MAGIC + bytes([ENCRYPTION_VERSION])
_TAG_BYTES = 16
SIFT_DIM = 128
_f32, _f64, _i64, _str = pa.float32(), pa.float64(), pa.int64(), pa.string()


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


def _vec(prefix: str, names: Iterable[str] = "xyz") -> list[pa.Field]:
    return [_required(f"{prefix}_{n}", _f64) for n in names]


TABLES: dict[str, pa.Schema] = {
    # V. `registered`: the node's image is part of the SfM reconstruction in `sfm/`; `placed_by_odometry`:
    # registered, but from a pose wheel odometry gave it (a seed, or a look-alike registration replaced).
    "nodes": pa.schema(
        [
            _required("node_id", _str),
            _required("episode_id", _str),
            _required("t_ns", _i64),
            _required("camera", _str),
            _required("image_topic", _str),
            *_vec("position"),
            *_vec("orientation", "xyzw"),
            _required("descriptor", pa.list_(pa.float32())),
            _required("registered", pa.bool_()),
            _required("placed_by_odometry", pa.bool_()),
        ]
    ),
    # E, undirected. `kind`: one of EDGE_KINDS; `shared_points`: 3D points both nodes observe, set for
    # covisibility edges only; `closed`: not traversable now (a shut door, a blocked aisle).
    "edges": pa.schema(
        [
            _required("source", _str),
            _required("target", _str),
            _required("kind", _str),
            _required("length_m", _f64),
            pa.field("shared_points", pa.int32()),
            _required("closed", pa.bool_()),
            pa.field("metadata", pa.map_(_str, _str)),
        ]
    ),
    # L. `text`: what a sign reads, "" for objects; `room`: the room's name as its sign reads, "" where the
    # extractor cannot tell (the learned one); `embedding`: the text encoder's unit vector of the landmark's
    # description (models.landmarks.describe).
    "landmarks": pa.schema(
        [
            _required("landmark_id", _str),
            _required("category", _str),
            pa.field("text", _str),
            pa.field("color", _str),
            pa.field("material", _str),
            pa.field("function", _str),
            pa.field("room", _str),
            *_vec("position"),
            _required("embedding", pa.list_(pa.float32())),
        ]
    ),
    # Many-to-many: the landmark's box in the node's image, in pixels, and `visible_fraction`: the fraction of it in
    # view (the annotated extractor), or how sure the learned detector is of it (its score, 0..1).
    "node_landmarks": pa.schema(
        [
            _required("node_id", _str),
            _required("landmark_id", _str),
            *_vec("box", ("x0", "y0", "x1", "y1")),
            pa.field("visible_fraction", _f64),
        ]
    ),
    # A node's SIFT keypoints that observe a 3D point of the reconstruction: the keypoint in pixels (COLMAP's
    # convention: the top-left pixel's centre is at 0.5, 0.5), the point's id and position in `map`, and the
    # keypoint's descriptor as COLMAP stores it (uint8). Points are repeated per node so that a localizer needs
    # no reconstruction; float32 keeps the table small (well under a millimetre in a building).
    "node_features": pa.schema(
        [
            _required("node_id", _str),
            _required("x", _f32),
            _required("y", _f32),
            _required("point3D_id", _i64),
            *[_required(f"point_{n}", _f32) for n in "xyz"],
            _required("descriptor", pa.binary(SIFT_DIM)),
        ]
    ),
}
TABLE_FILES = {name: f"{name}.parquet" for name in TABLES}
_IDS = {"nodes": "node_id", "landmarks": "landmark_id"}
_VECTORS = {"nodes": "descriptor", "landmarks": "embedding"}


class MapError(ValueError):
    """A map that cannot be written or read as asked; the message says why."""


class MapKeyError(MapError):
    """A missing, malformed or wrong key."""


class MapIntegrityError(MapError):
    """A file that is missing or differs from what the manifest recorded."""


def generate_key() -> str:
    """A new random key, in base64, for ASTRA_MAP_KEY."""
    return base64.b64encode(AESGCM.generate_key(bit_length=8 * KEY_BYTES)).decode()


def parse_key(text: str) -> bytes:
    """The key written in `text` (see the module docstring); never echoes the text in errors."""
    text = text.strip()
    try:
        if len(text) == 2 * KEY_BYTES:
            key = bytes.fromhex(text)
        else:
            key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != KEY_BYTES:
        raise MapKeyError(
            f"{KEY_ENV} must be {KEY_BYTES} bytes as {2 * KEY_BYTES} hex digits or in base64; "
            "make one with `python -c 'from schemas.map import generate_key; print(generate_key())'`"
        )
    return key


def _cipher(key: bytes) -> AESGCM:
    if len(key) != KEY_BYTES:
        raise MapKeyError(f"a map key is {KEY_BYTES} bytes, got {len(key)}")
    return AESGCM(key)


def encrypt(data: bytes, key: bytes, path: str) -> bytes:
    """`data` as the encrypted file stored for the plain relative `path`."""
    nonce = os.urandom(NONCE_BYTES)
    return _HEADER + nonce + _cipher(key).encrypt(nonce, data, _HEADER + path.encode())


def decrypt(blob: bytes, key: bytes, path: str) -> bytes:
    """The plain bytes of an encrypted file stored for `path`; MapKeyError unless the key and bytes are right."""
    start = len(_HEADER) + NONCE_BYTES
    if not blob.startswith(MAGIC) or len(blob) < start + _TAG_BYTES:
        raise MapError(f"{path}: not an encrypted map file, or a truncated one")
    header, nonce = blob[: len(_HEADER)], blob[len(_HEADER) : start]
    if header != _HEADER:
        raise MapError(f"{path}: encryption version {header[-1]}, this software reads {ENCRYPTION_VERSION}")
    try:
        return _cipher(key).decrypt(nonce, blob[start:], header + path.encode())
    except InvalidTag:
        raise MapKeyError(f"{path}: cannot decrypt: wrong key or corrupted file") from None


def stored_path(path: str, encrypted: bool) -> str:
    """Where the file of plain relative `path` is stored."""
    return path + ENCRYPTED_SUFFIX if encrypted else path


@dataclass(frozen=True)
class FileEntry:
    """A stored file: SHA-256 (hex) and size of its bytes on disk."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """`manifest.json`. `files` maps each plain relative path (POSIX) to its stored file's entry."""

    build: dict[str, Any]
    files: dict[str, FileEntry]
    encrypted: bool = False
    version: int = MAP_FORMAT_VERSION
    seal: str = ""  # base64; set on encrypted maps, see the module docstring

    def _sealed_text(self) -> str:
        return json.dumps({**asdict(self), "seal": ""}, sort_keys=True, separators=(",", ":"))

    def sealed(self, key: bytes) -> Manifest:
        """This manifest with its seal under `key`."""
        return replace(self, seal=base64.b64encode(encrypt(b"", key, self._sealed_text())).decode())

    def check_seal(self, key: bytes) -> None:
        """Raise MapKeyError unless the seal was made with `key` over this very manifest."""
        try:
            decrypt(base64.b64decode(self.seal, validate=True), key, self._sealed_text())
        except (MapError, binascii.Error):
            raise MapKeyError(f"cannot open the map: wrong key or corrupted {MANIFEST_FILE}") from None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            raw = json.loads(text)
            version = raw.get("version")
        except (ValueError, AttributeError) as error:
            raise MapError(f"{MANIFEST_FILE} is not a JSON object: {error}") from None
        if version != MAP_FORMAT_VERSION:
            raise MapError(
                f"map format version {version!r}, this software reads {MAP_FORMAT_VERSION}; "
                "rebuild the map with `astra map build`"
            )
        try:
            manifest = cls(**{**raw, "files": {p: FileEntry(**e) for p, e in raw["files"].items()}})
        except (TypeError, KeyError, AttributeError) as error:
            raise MapError(f"{MANIFEST_FILE} is malformed: {error!r}") from None
        for path in manifest.files:
            pure = PurePosixPath(path)
            if pure.is_absolute() or ".." in pure.parts:
                raise MapError(f"{MANIFEST_FILE} names a file outside the map: {path!r}")
        return manifest


def conform_table(name: str, table: pa.Table) -> pa.Table:
    """`table` with exactly the columns of map table `name`, in order and cast to its types."""
    schema = TABLES[name]
    missing = [f.name for f in schema if f.name not in table.column_names]
    extra = [c for c in table.column_names if c not in schema.names]
    if missing or extra:
        raise MapError(f"map table {name!r}: missing columns {missing}, unexpected columns {extra}")
    columns = []
    for f in schema:
        column = table.column(f.name)
        try:
            column = column.cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            message = f"map table {name!r}: column {f.name!r} of type {column.type} is not {f.type}: {error}"
            raise MapError(message) from None
        if not f.nullable and column.null_count:
            raise MapError(f"map table {name!r}: column {f.name!r} has {column.null_count} nulls")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def check_graph(tables: Mapping[str, pa.Table]) -> None:
    """Raise MapError unless conformed tables make one consistent graph.

    Ids are unique, every edge and sighting names known ids, edge kinds are known, lengths are finite
    and not negative, and all descriptors (all embeddings) have one length.
    """
    ids = {}
    for name, column in _IDS.items():
        values = tables[name].column(column)
        if pc.count_distinct(values).as_py() != len(values):
            raise MapError(f"map table {name!r}: {column} is not unique")
        ids[name] = values.combine_chunks()
    for table, column, refers_to in [
        ("edges", "source", "nodes"),
        ("edges", "target", "nodes"),
        ("node_landmarks", "node_id", "nodes"),
        ("node_landmarks", "landmark_id", "landmarks"),
        ("node_features", "node_id", "nodes"),
    ]:
        unknown = pc.filter(tables[table][column], pc.invert(pc.is_in(tables[table][column], ids[refers_to])))
        if len(unknown):
            raise MapError(f"map table {table!r}: {column} {unknown[0].as_py()!r} is not in {refers_to!r}")
    edges = tables["edges"]
    bad_kinds = set(pc.unique(edges["kind"]).to_pylist()) - set(EDGE_KINDS)
    if bad_kinds:
        raise MapError(f"map table 'edges': unknown kinds {sorted(bad_kinds)}, expected one of {EDGE_KINDS}")
    lengths = edges["length_m"].to_numpy()
    if not (np.isfinite(lengths) & (lengths >= 0)).all():
        raise MapError("map table 'edges': length_m must be finite and not negative")
    for name, column in _VECTORS.items():
        sizes = pc.unique(pc.list_value_length(tables[name][column])).to_pylist()
        if len(sizes) > 1:
            raise MapError(f"map table {name!r}: {column} vectors differ in length: {sorted(sizes)}")
