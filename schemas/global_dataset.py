"""The format of Astra-Global's training sets: labelled camera frames of expert tours, written by
`pipelines.global_dataset` from the lake and read by the training code of the global models.

Layout of a dataset folder:

    manifest.json              format version, the lake and version it was read from, episodes, sites, settings
    frames/<episode>.parquet   one row per camera picture at the sampled instants of each tour (FRAMES)
    landmarks.parquet          every landmark of every building in it, as its annotation holds it (LANDMARKS)

Poses are the simulator's truth in the building's own frame (`world`): a tour's instants are chosen along its true
trajectory, so that tours of one building share a frame and relative poses are exact. A frame's `sightings` are the
landmarks the simulator's segmentation shows in its picture, with their boxes in the picture's pixels (half-open
index ranges, as `models.landmarks` says). The three cameras of one instant share `t_ns`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from schemas.dataset_manifest import read_manifest, write_manifest

GLOBAL_DATASET_VERSION = 1
FRAMES_DIR, LANDMARKS_FILE = "frames", "landmarks.parquet"

_f32, _f64, _i32, _i64, _str = pa.float32(), pa.float64(), pa.int32(), pa.int64(), pa.string()


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


SIGHTING = pa.struct(
    [
        _required("landmark_id", _str),
        *[_required(f"box_{n}", _i32) for n in ("x0", "y0", "x1", "y1")],
        _required("visible_fraction", _f32),
    ]
)

FRAMES = pa.schema(
    [
        _required("site", _str),
        _required("kind", _str),  # the building's kind: office, warehouse, home, hospital
        _required("world_seed", _i64),
        _required("episode_id", _str),
        _required("t_ns", _i64),
        _required("camera", _str),  # one of schemas.topics.CAMERAS
        _required("width", _i32),
        _required("height", _i32),
        _required("jpeg", pa.binary()),  # the picture as recorded
        _required("k", pa.list_(_f64, 9)),  # the camera matrix, row-major (pixel centres at integers)
        # base_link in `world`, and the camera's optical frame in `world` (REP-103: z forward, x right, y down).
        *[_required(f"base_{n}", _f64) for n in ("x", "y", "yaw")],
        *[_required(f"camera_{n}", _f64) for n in ("x", "y", "z", "qx", "qy", "qz", "qw")],
        _required("sightings", pa.list_(SIGHTING)),
    ]
)

LANDMARKS = pa.schema(
    [
        _required("site", _str),
        _required("landmark_id", _str),
        _required("kind", _str),  # sign | object
        _required("category", _str),
        _required("text", _str),  # what a sign reads, "" for objects
        _required("color", _str),
        _required("material", _str),
        _required("function", _str),
        _required("room", _str),  # the room's name, as its sign reads
        *[_required(f"position_{n}", _f64) for n in "xyz"],
    ]
)


class GlobalDatasetError(ValueError):
    """A folder that is not a global training set of this version."""


@dataclass(frozen=True)
class GlobalDatasetManifest:
    """What a dataset holds and where it came from, so that a trained model can name its data."""

    lake: str
    lake_version: int
    episodes: list[str]
    sites: dict[str, dict[str, Any]]  # site -> {"kind", "world_seed", "episodes", "frames"}
    settings: dict[str, Any]
    version: int = GLOBAL_DATASET_VERSION
    counts: dict[str, int] = field(default_factory=dict)  # rows per file

    def write(self, folder: Path) -> None:
        write_manifest(self, folder)

    @classmethod
    def read(cls, folder: Path) -> GlobalDatasetManifest:
        return cls(**read_manifest(folder, "global", GLOBAL_DATASET_VERSION, GlobalDatasetError))
