"""The annotated landmark extractor: the simulator's semantic annotation stands in for a learned one.

It implements models.landmarks.LandmarkExtractor from privileged knowledge (the world's landmarks and the
segmentation render), so it lives with the simulator; boxes follow the conventions in models.landmarks.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np
import pycolmap
from scipy.spatial import ConvexHull
from scipy.spatial.transform import Rotation

from models.landmarks import LandmarkExtractor, LandmarkObservations, NodeView, describe, landmark_table
from models.mapping.sfm import align_rigid
from schemas.robot import DEFAULT_ROBOT, RobotConfig, camera_mount
from schemas.world import Box, Landmark, World
from sim.simulator import Simulator

if TYPE_CHECKING:  # transformers takes seconds to import: only the extractor that encodes text loads it
    from models.text_encoder import TextEncoder

_GEOM_NAME = re.compile(r"lm_(.+?)(?:_end\d+)?")  # a landmark's geom, or an end frame of a rack
_CORNER_SIGNS = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
# Corners i and j share an edge when their signs differ on exactly one axis.
_EDGES = [(i, j) for i, j in itertools.combinations(range(8), 2) if np.sum(_CORNER_SIGNS[i] != _CORNER_SIGNS[j]) == 1]


@dataclass(frozen=True)
class LandmarkBox:
    """A landmark seen in a segmentation render: its box (half-open, models.landmarks) and visible pixels."""

    landmark: Landmark
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    pixels: int


def geom_owners(model: mujoco.MjModel, landmarks: Sequence[Landmark]) -> np.ndarray:
    """Index into `landmarks` of each geom's landmark, -1 for other geoms, and a trailing -1."""
    index = {lm.id: i for i, lm in enumerate(landmarks)}
    owners = np.full(model.ngeom + 1, -1)  # the extra entry is what background pixels (geom -1) pick
    for geom in range(model.ngeom):
        match = _GEOM_NAME.fullmatch(model.geom(geom).name)
        if match and match[1] in index:
            owners[geom] = index[match[1]]
    return owners


def landmark_boxes(
    geoms: np.ndarray, owners: np.ndarray, landmarks: Sequence[Landmark], min_pixels: int
) -> list[LandmarkBox]:
    """The landmarks with at least `min_pixels` in a segmentation render (geom ids, Simulator.segmentation).

    `owners` maps geoms to indices into `landmarks` (geom_owners); a box spans all of its landmark's pixels.
    """
    labels = owners[geoms]
    counts = np.bincount(labels[labels >= 0], minlength=len(landmarks))
    boxes = []
    for i in np.flatnonzero(counts >= min_pixels):
        ys, xs = np.nonzero(labels == i)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        boxes.append(LandmarkBox(landmarks[i], box, int(counts[i])))
    return boxes


class AnnotatedLandmarkExtractor(LandmarkExtractor):
    """Landmarks from the world's annotation, boxes from the simulator's segmentation render.

    Privileged: the robot is placed at each node's true pose (`world_pose`; views without one are taken to be
    posed in the world itself), and the segmentation render of the node's camera says which landmark covers
    which pixel, walls and furniture occluding as they do in the picture. Landmark positions are moved from the
    world into `map` by the rigid motion that best aligns the views' map poses with their true ones. Dynamic
    agents stand where they start. A landmark counts as seen when at least `min_pixels` of it are visible. Its
    `visible_fraction` is those pixels over the area of the whole box's silhouette on the unbounded image plane,
    so cropping by the image border and occlusion both lower it.

    `config` must render at the resolution of the nodes' images, since boxes are in their pixels.
    """

    needs_world = True

    def __init__(
        self,
        world_dir: Path | str,
        min_pixels: int = 40,
        config: RobotConfig = DEFAULT_ROBOT,
        text_encoder: TextEncoder | None = None,
    ) -> None:
        self.world_dir = Path(world_dir)
        self.world = World.load(self.world_dir)
        self.min_pixels = min_pixels
        self.config = config
        if text_encoder is None:
            from models.text_encoder import TextEncoder

            text_encoder = TextEncoder.from_pretrained()
        self.text_encoder = text_encoder

    def extract(self, views: Sequence[NodeView]) -> LandmarkObservations:
        sim = Simulator(self.world_dir, self.config)
        try:
            owners = geom_owners(sim.model, self.world.landmarks)
            sightings = [row for view in views for row in self._sightings(sim, owners, view)]
        finally:
            sim.close()
        seen = {row["landmark_id"] for row in sightings}
        landmarks = [lm for lm in self.world.landmarks if lm.id in seen]
        map_from_world = _map_from_world(views)
        positions = [map_from_world * np.asarray(lm.box.center, dtype=float) for lm in landmarks]
        rooms = [self.world.room(lm.room_id).name for lm in landmarks]
        embeddings = self.text_encoder.encode([describe(lm, room) for lm, room in zip(landmarks, rooms, strict=True)])
        rows = [
            {
                "landmark_id": lm.id,
                "category": lm.category,
                "text": lm.text,
                "color": lm.color,
                "material": lm.material,
                "function": lm.function,
                "room": room,
                "position_x": position[0],
                "position_y": position[1],
                "position_z": position[2],
                "embedding": embedding.tolist(),
            }
            for lm, room, position, embedding in zip(landmarks, rooms, positions, embeddings, strict=True)
        ]
        return LandmarkObservations(landmark_table("landmarks", rows), landmark_table("node_landmarks", sightings))

    def _sightings(self, sim: Simulator, owners: np.ndarray, view: NodeView) -> list[dict[str, Any]]:
        size = (self.config.camera_height, self.config.camera_width)
        if view.image is not None and view.image.shape[:2] != size:
            raise ValueError(f"node {view.node_id}: image is {view.image.shape[:2]}, the extractor renders {size}")
        sim.place(*_true_pose(view))
        seen = landmark_boxes(sim.segmentation(view.camera), owners, self.world.landmarks, self.min_pixels)
        camera_from_world = self._camera_from_world(view)
        k = np.reshape(sim.camera_info(view.camera).k, (3, 3))
        rows = []
        for sighting in seen:
            area = _silhouette_area(sighting.landmark.box, camera_from_world, k, self.config.depth_near)
            x0, y0, x1, y1 = sighting.box
            rows.append(
                {
                    "node_id": view.node_id,
                    "landmark_id": sighting.landmark.id,
                    "box_x0": x0,
                    "box_y0": y0,
                    "box_x1": x1,
                    "box_y1": y1,
                    "visible_fraction": min(sighting.pixels / area, 1.0),
                }
            )
        return rows

    def _camera_from_world(self, view: NodeView) -> tuple[Rotation, np.ndarray]:
        """Rotation and translation taking world points into the view camera's optical frame."""
        x, y, yaw = _true_pose(view)
        mount_translation, mount_rotation = camera_mount(self.config, view.camera)
        world_from_base = Rotation.from_euler("z", yaw)
        rotation = world_from_base * mount_rotation
        position = np.array([x, y, 0.0]) + world_from_base.apply(mount_translation)
        return rotation.inv(), -rotation.inv().apply(position)


def _true_pose(view: NodeView) -> tuple[float, float, float]:
    return view.world_pose if view.world_pose is not None else view.base_pose


def _map_from_world(views: Sequence[NodeView]) -> pycolmap.Rigid3d:
    """The rigid motion taking the views' true base positions closest to their map ones (identity without truth)."""
    posed = [view for view in views if view.world_pose is not None]
    if not posed:
        return pycolmap.Rigid3d()
    world_xy = np.array([[*view.world_pose[:2], 0.0] for view in posed])
    map_xy = np.array([[*view.base_pose[:2], 0.0] for view in posed])
    return align_rigid(world_xy, map_xy)


def _silhouette_area(box: Box, camera_from_world: tuple[Rotation, np.ndarray], k: np.ndarray, near: float) -> float:
    """Pixel area of a box's image on the unbounded image plane, the part nearer than `near` cut away."""
    rotation, translation = camera_from_world
    corners = rotation.apply(np.asarray(box.center) + _CORNER_SIGNS * np.asarray(box.half_size)) + translation
    depth = corners[:, 2] - near
    crossings = [
        corners[i] + (corners[j] - corners[i]) * depth[i] / (depth[i] - depth[j])
        for i, j in _EDGES
        if depth[i] * depth[j] < 0
    ]
    # The cut box is convex, so its image is the convex hull of the images of its vertices.
    vertices = np.vstack([corners[depth >= 0], *crossings])
    pixels = vertices[:, :2] / vertices[:, 2:] * np.diag(k)[:2] + k[:2, 2]
    return ConvexHull(pixels).volume
