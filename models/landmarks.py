"""Landmarks L of the map and the nodes that see them: the landmark extractors of map building.

An extractor looks at map nodes (one camera's picture at a keyframe) and returns two map tables
(schemas.map): `landmarks`, one row per landmark any node sees, and `node_landmarks`, one row per
sighting with the landmark's box in the node's image. Sightings are many-to-many, and two nodes that
see one landmark are co-visible.

Extractors are plugins in the manner of hloc: map building (pipelines.mapping) picks one by name. The
only one so far, `sim.annotations.AnnotatedLandmarkExtractor`, is privileged: it reads the world's
semantic annotation and the simulator's ground truth, standing in for the annotated semantic map until
a learned extractor finds landmarks in the pictures alone.

Boxes are half-open pixel index ranges, so `image[y0:y1, x0:x1]` crops the landmark; in the
coordinates of the camera's K (pixel centres at integers) its edges lie at x0 - 0.5 and x1 - 0.5.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from schemas.map import TABLES, conform_table
from schemas.world import Landmark


@dataclass(frozen=True)
class NodeView:
    """A map node as extractors see it: a camera's picture taken with base_link at a pose in `map`."""

    node_id: str
    camera: str  # one of the rig's cameras, schemas.topics.CAMERAS
    base_pose: tuple[float, float, float]  # x, y, yaw of base_link in map
    image: np.ndarray | None = None  # RGB (H, W, 3) uint8; extractors that need it say so
    # The simulator's truth of base_link in its world, where the log records it: only privileged extractors use
    # it, since `map` (the first tour's odometry frame) is off the world by that tour's drift.
    world_pose: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class LandmarkObservations:
    """The map tables `landmarks` and `node_landmarks`, conformed to schemas.map."""

    landmarks: pa.Table
    node_landmarks: pa.Table


class LandmarkExtractor(abc.ABC):
    """Finds the landmarks that map nodes see; subclasses register in EXTRACTORS."""

    @abc.abstractmethod
    def extract(self, views: Sequence[NodeView]) -> LandmarkObservations:
        """Every landmark seen from `views`, and each sighting with its box."""


def describe(landmark: Landmark, room: str) -> str:
    """What a landmark's text embedding encodes, e.g. "red fabric sofa, a place to rest, in the Reception"."""
    reading = f' reading "{landmark.text}"' if landmark.text else ""
    return f"{landmark.color} {landmark.material} {landmark.category}{reading}, {landmark.function}, in the {room}"


def landmark_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as the map table `name` (landmarks or node_landmarks), conformed to schemas.map."""
    return conform_table(name, pa.table({column: [row[column] for row in rows] for column in TABLES[name].names}))
