"""Maps on disk (format: schemas.map): written whole and atomically, read back verified.

A map is written under a hidden folder beside its destination and then renamed into place, so readers
find the old map or the new one, never a mix of both. A new version can keep the one it replaces readable, in
`versions/<n>/` of the map's folder (schemas.map). On Linux, replacing a map swaps the two folders
in one step (renameat2); elsewhere the old map is moved aside first, which leaves a moment with no map,
but never a partial one. Files are not fsynced: a map torn by a power cut fails its hash check instead.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pycolmap

from schemas.lake import PARQUET_COMPRESSION
from schemas.map import (
    KEY_ENV,
    MANIFEST_FILE,
    SFM_DIR,
    TABLE_FILES,
    TABLES,
    VERSIONS_DIR,
    FileEntry,
    Manifest,
    MapError,
    MapIntegrityError,
    MapKeyError,
    check_graph,
    conform_table,
    decrypt,
    encrypt,
    parse_key,
    stored_path,
)

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # from Linux <fcntl.h> and <linux/fs.h>


@dataclass(frozen=True)
class TopoMap:
    """A map read whole and verified: its manifest, its tables (schemas.map.TABLES) and its SfM files."""

    manifest: Manifest
    nodes: pa.Table
    edges: pa.Table
    landmarks: pa.Table
    node_landmarks: pa.Table
    node_features: pa.Table
    sfm_files: dict[str, bytes]  # plain bytes by path relative to sfm/

    def reconstruction(self) -> pycolmap.Reconstruction:
        """The SfM reconstruction. pycolmap reads only from disk, so the plain files spend a moment in a temp dir."""
        if not self.sfm_files:
            raise MapError("this map has no SfM reconstruction")
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in self.sfm_files.items():
                path = Path(tmp, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            return pycolmap.Reconstruction(tmp)


def key_from_env() -> bytes | None:
    """The key in ASTRA_MAP_KEY, or None where it is unset or empty; MapKeyError where it is malformed."""
    text = os.environ.get(KEY_ENV, "")
    return parse_key(text) if text.strip() else None


def write_map(
    out_dir: Path | str,
    tables: Mapping[str, pa.Table],
    sfm_dir: Path | str | None,
    build_info: Mapping[str, Any],
    key: bytes | None = None,
    keep_previous_as: int | None = None,
) -> Manifest:
    """Write a map to `out_dir`, replacing the map there, if any; encrypted where `key` is given. With
    `keep_previous_as`, the map replaced moves to `versions/<keep_previous_as>/`, beside the versions it kept.

    `tables` (all of schemas.map.TABLES) are conformed and checked as a graph, and `sfm_dir` must
    hold a reconstruction that pycolmap reads; MapError says what is wrong. `build_info` goes into the
    manifest as it is, so it must be JSON.
    """
    out_dir = Path(out_dir)
    if set(tables) != set(TABLES):
        raise MapError(f"a map has the tables {sorted(TABLES)}, got {sorted(tables)}")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).is_file():
        raise MapError(f"{out_dir} is not empty and holds no map: refusing to replace it")
    conformed = {name: conform_table(name, tables[name]) for name in TABLES}
    check_graph(conformed)
    if sfm_dir is not None:
        try:
            pycolmap.Reconstruction(str(sfm_dir))
        except ValueError as error:
            raise MapError(f"{sfm_dir} is not a pycolmap reconstruction: {error}") from None

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:12]}.tmp")
    staging.mkdir()
    try:
        files = {}
        for path, data in _plain_files(conformed, None if sfm_dir is None else Path(sfm_dir)):
            files[path] = _write_file(staging / stored_path(path, key is not None), data, key, path)
        manifest = Manifest(build=dict(build_info), files=files, encrypted=key is not None)
        if key is not None:
            manifest = manifest.sealed(key)
        (staging / MANIFEST_FILE).write_text(manifest.to_json())
        _move_into_place(staging, out_dir, keep_previous_as)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def read_map(map_dir: Path | str, key: bytes | None = None) -> TopoMap:
    """The map at `map_dir`, every file checked against the manifest; `key` opens an encrypted map.

    Raises MapKeyError for an encrypted map without its key, MapIntegrityError for a missing or changed
    file, MapError for anything else that keeps the map from being read.
    """
    map_dir = Path(map_dir)
    manifest = read_manifest(map_dir, key)
    missing = sorted(set(TABLE_FILES.values()) - set(manifest.files))
    if missing:
        raise MapIntegrityError(f"{MANIFEST_FILE} in {map_dir} lists no {missing}")
    plain = {
        path: _read_verified(map_dir, path, entry, key if manifest.encrypted else None)
        for path, entry in manifest.files.items()
    }
    tables = {name: conform_table(name, pq.read_table(_arrow_owned(plain[TABLE_FILES[name]]))) for name in TABLES}
    prefix = f"{SFM_DIR}/"
    sfm_files = {path.removeprefix(prefix): data for path, data in plain.items() if path.startswith(prefix)}
    return TopoMap(manifest=manifest, sfm_files=sfm_files, **tables)


def read_manifest(map_dir: Path | str, key: bytes | None = None) -> Manifest:
    """The manifest of the map at `map_dir`, its seal checked with `key` where the map is encrypted (read_map's
    errors)."""
    map_dir = Path(map_dir)
    try:
        manifest = Manifest.from_json((map_dir / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        raise MapError(f"no map at {map_dir} (no {MANIFEST_FILE}); `astra map build` makes one") from None
    if manifest.encrypted:
        if key is None:
            raise MapKeyError(f"the map at {map_dir} is encrypted: set {KEY_ENV} to its key")
        manifest.check_seal(key)
    return manifest


def _arrow_owned(data: bytes) -> pa.BufferReader:
    """`data` copied into memory that Arrow owns, to read from.

    pyarrow's reader may still be dropping its input on a thread of its own when the process exits (right after
    reading a map, on a usage error): a buffer over Python bytes needs the GIL to go, which a finalizing interpreter
    no longer gives, and the process aborts with SIGABRT instead of exiting with its code (apache/arrow#34314).
    """
    sink = pa.BufferOutputStream()
    sink.write(data)
    return pa.BufferReader(sink.getvalue())


def _plain_files(tables: Mapping[str, pa.Table], sfm_dir: Path | None) -> Iterator[tuple[str, bytes]]:
    """(relative path, plain bytes) of every file of a map but the manifest, one at a time."""
    for name, table in tables.items():
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression=PARQUET_COMPRESSION)
        yield TABLE_FILES[name], sink.getvalue().to_pybytes()
    if sfm_dir is not None:
        for file in sorted(p for p in sfm_dir.rglob("*") if p.is_file()):
            yield f"{SFM_DIR}/{file.relative_to(sfm_dir).as_posix()}", file.read_bytes()


def _write_file(stored: Path, data: bytes, key: bytes | None, path: str) -> FileEntry:
    if key is not None:
        data = encrypt(data, key, path)
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(data)
    return FileEntry(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def _read_verified(map_dir: Path, path: str, entry: FileEntry, key: bytes | None) -> bytes:
    stored = stored_path(path, key is not None)
    try:
        data = (map_dir / stored).read_bytes()
    except FileNotFoundError:
        raise MapIntegrityError(f"{stored} is missing from the map at {map_dir}") from None
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise MapIntegrityError(
            f"{stored} in {map_dir} does not match its SHA-256 in {MANIFEST_FILE}: it changed after the map was written"
        )
    return data if key is None else decrypt(data, key, path)


def _move_into_place(staging: Path, out_dir: Path, keep_previous_as: int | None) -> None:
    """Rename the finished `staging` to `out_dir`, replacing what is there, and remove the old map or keep it as
    version `keep_previous_as`."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    kept = out_dir / VERSIONS_DIR
    if keep_previous_as is not None and (kept / str(keep_previous_as)).exists():
        raise MapError(f"{kept / str(keep_previous_as)} exists already: the map's versions disagree")
    carried = keep_previous_as is not None and kept.exists()
    if carried:  # the versions kept so far travel with the new one (they are in no manifest)
        os.rename(kept, staging / VERSIONS_DIR)
    old = staging
    try:
        if not _exchange(staging, out_dir):
            old = staging.with_name(f"{staging.name}.old")
            os.rename(out_dir, old)
            os.rename(staging, out_dir)
    except BaseException:
        if carried and (staging / VERSIONS_DIR).exists():
            os.rename(staging / VERSIONS_DIR, kept)  # before the caller removes `staging`
        raise
    if keep_previous_as is None:
        shutil.rmtree(old)
        return
    kept.mkdir(exist_ok=True)
    os.rename(old, kept / str(keep_previous_as))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; False where the OS or the file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(code, os.strerror(code), str(b))
