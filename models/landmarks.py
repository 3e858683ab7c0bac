"""Landmarks L of the map and the nodes that see them: the landmark extractors of map building.

An extractor looks at map nodes (one camera's picture at a keyframe) and returns two map tables
(schemas.map): `landmarks`, one row per landmark any node sees, and `node_landmarks`, one row per
sighting with the landmark's box in the node's image. Sightings are many-to-many, and two nodes that
see one landmark are co-visible.

Extractors are plugins in the manner of hloc: map building (pipelines.mapping) picks one by name and gives it
what it declares it needs. `models.landmark_extraction.DetectedLandmarkExtractor` finds landmarks in the nodes'
pictures alone and places them with the map's own geometry, as on a real robot; the annotated one,
`sim.annotations.AnnotatedLandmarkExtractor`, is privileged: it reads the world's semantic annotation and the
simulator's ground truth, and stays for evaluation and for text goals, which need the rooms it names.

Boxes are half-open pixel index ranges, so `image[y0:y1, x0:x1]` crops the landmark; in the
coordinates of the camera's K (pixel centres at integers) its edges lie at x0 - 0.5 and x1 - 0.5.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import pyarrow as pa

from schemas.map import TABLES, conform_table
from schemas.messages import decode_jpeg


@dataclass(frozen=True)
class NodeGeometry:
    """Where a node's camera stood in `map`, and the reconstruction's points its picture sees."""

    map_from_camera: np.ndarray  # (4, 4) the optical frame's pose in map
    k: np.ndarray  # (3, 3) intrinsics as in sensor_msgs/CameraInfo: pixel centres at integers
    keypoints: np.ndarray  # (n, 2) pixels in COLMAP's convention (node_features): pixel i spans [i, i + 1)
    points: np.ndarray  # (n, 3) the 3D point in map each keypoint observes
    point_ids: np.ndarray  # (n,) that point's id in the reconstruction


@dataclass(frozen=True)
class NodeView:
    """A map node as extractors see it: a camera's picture taken with base_link at a pose in `map`."""

    node_id: str
    camera: str  # one of the rig's cameras, schemas.topics.CAMERAS
    base_pose: tuple[float, float, float]  # x, y, yaw of base_link in map
    image: np.ndarray | None = None  # RGB (H, W, 3) uint8; extractors that need it say so
    # The picture as recorded (JPEG), where `image` is not given: decoded only when used, so that the views of a
    # site's thousands of nodes do not hold every picture decoded at once.
    jpeg: bytes | None = None
    # The simulator's truth of base_link in its world, where the log records it: only privileged extractors use
    # it, since `map` (the first tour's odometry frame) is off the world by that tour's drift.
    world_pose: tuple[float, float, float] | None = None
    geometry: NodeGeometry | None = None  # None for a node without a camera pose

    @property
    def has_picture(self) -> bool:
        return self.image is not None or self.jpeg is not None

    def picture(self) -> np.ndarray:
        """RGB (H, W, 3) uint8: `image`, or `jpeg` decoded now."""
        if self.image is not None:
            return self.image
        if self.jpeg is None:
            raise ValueError(f"node {self.node_id} has no picture")
        return decode_jpeg(self.jpeg)


@dataclass(frozen=True)
class LandmarkObservations:
    """The map tables `landmarks` and `node_landmarks`, conformed to schemas.map."""

    landmarks: pa.Table
    node_landmarks: pa.Table
    report: dict[str, Any] = field(default_factory=dict)  # how the extraction went, for the map's manifest


class LandmarkExtractor(abc.ABC):
    """Finds the landmarks that map nodes see; subclasses register in EXTRACTORS (pipelines.mapping).

    Map building constructs a privileged extractor (`needs_world`) from the simulator's world folder and the robot
    config that renders at the nodes' resolution, any other with no arguments; it fills NodeView.jpeg for those that
    need pictures.
    """

    needs_world: ClassVar[bool] = False
    needs_pictures: ClassVar[bool] = False

    @abc.abstractmethod
    def extract(self, views: Sequence[NodeView]) -> LandmarkObservations:
        """Every landmark seen from `views`, and each sighting with its box."""


class Described(Protocol):
    """What `describe` reads of a landmark: schemas.world.Landmark, or a detected one."""

    category: str
    text: str
    color: str
    material: str
    function: str


def describe(landmark: Described, room: str) -> str:
    """What a landmark's text embedding encodes, e.g. "red fabric sofa, a place to rest, in the Reception"; an
    unknown function or room ("") is left out rather than named empty."""
    reading = f' reading "{landmark.text}"' if landmark.text else ""
    named = f"{landmark.color} {landmark.material} {landmark.category}{reading}"
    return ", ".join(filter(None, (named, landmark.function, f"in the {room}" if room else "")))


def landmark_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as the map table `name` (landmarks or node_landmarks), conformed to schemas.map."""
    return conform_table(name, pa.table({column: [row[column] for row in rows] for column in TABLES[name].names}))


def merge_landmarks(
    kept: LandmarkObservations, added: LandmarkObservations, radius_m: float, suffix: str
) -> LandmarkObservations:
    """`added` (found in new nodes) merged into `kept` (a map's): an added landmark of the same category, colour and
    reading as a kept one within `radius_m` is that one, and its sightings name it; the others join as new ones,
    their ids made unique with `suffix` where a kept one has the id already. Kept landmarks do not move."""
    old = kept.landmarks.to_pylist()
    position = np.array([[row[f"position_{a}"] for a in "xyz"] for row in old]).reshape(-1, 3)
    taken = {row["landmark_id"] for row in old}
    renamed, rows = {}, []
    for row in added.landmarks.to_pylist():
        here = np.array([row[f"position_{a}"] for a in "xyz"])
        same = [
            (float(np.linalg.norm(position[i] - here)), i)
            for i, lm in enumerate(old)
            if (lm["category"], lm["color"], lm["text"]) == (row["category"], row["color"], row["text"])
        ]
        near = min((d, i) for d, i in same) if same else None
        if near is not None and near[0] <= radius_m:
            renamed[row["landmark_id"]] = old[near[1]]["landmark_id"]
            continue
        landmark_id = row["landmark_id"] if row["landmark_id"] not in taken else f"{row['landmark_id']}-{suffix}"
        renamed[row["landmark_id"]] = landmark_id
        taken.add(landmark_id)
        rows.append({**row, "landmark_id": landmark_id})
    sightings = [{**row, "landmark_id": renamed[row["landmark_id"]]} for row in added.node_landmarks.to_pylist()]
    return LandmarkObservations(
        pa.concat_tables([kept.landmarks, landmark_table("landmarks", rows)]),
        pa.concat_tables([kept.node_landmarks, landmark_table("node_landmarks", sightings)]),
        {**added.report, "merged": len(renamed) - len(rows), "added": len(rows)},
    )
