"""The learned landmark extractor: landmarks found in the map nodes' pictures by the landmark detector
(models.landmark_detector) and placed with the map's own geometry, so that a map needs nothing but the recording.

    detect   each node's picture, shrunk to the detector's input size (160x120, as it was trained), boxes scaled back
             to the node's pixels; of two boxes of one category overlapping by IoU >= 0.5 in one picture the better
    place    each detection at the median of the reconstruction's 3D points whose keypoints in the node fall inside
             its box; where none does, on the ray through the box's centre at the median depth of the points around
             the box (a sign on a wall), or else at the depth typical of its category in this map (the median over
             detections placed by points), or at `default_depth_m` (PLACEMENTS)
    group    detections of one physical landmark across nodes: the same category and colour, within `merge_radius_m`
             of the group's position or sharing `min_shared_points` 3D points with it (a long rack seen from along
             its aisle), never two from one picture, and for signs with readings both, readings alike
    keep     the groups detected in `min_sightings` pictures or more: a detection seen once is too often false
    rows     one landmark per group, id "det-0000" in the order of first sighting; material and text by majority,
             the position the median of the group's detections placed the surest way, the function from the
             training set's table (LandmarkFunctions), the room unknown ("")

A sighting's `visible_fraction` is the detector's score (heatmap peak, 0..1): how sure the detector is that the
landmark is there, since it cannot know how much of the landmark is hidden.

`min_sightings` was chosen on 60 s tours of office-3, warehouse-3, home-3 and hospital-3 (benchmarks/landmarks.py's
comparison with the annotated extractor): 2 / 3 / 4 sightings gave a mean precision of 0.33 / 0.44 / 0.57 and
recall of 0.64 / 0.58 / 0.53.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from models.landmark_detector import Box, Detection, LandmarkDetector, box_iou, edit_distance
from models.landmarks import LandmarkExtractor, LandmarkObservations, NodeGeometry, NodeView, describe, landmark_table
from models.text_encoder import TextEncoder

DEFAULT_CHECKPOINT = Path(__file__).parent / "weights" / "landmark_detector"
FUNCTIONS_FILE = "functions.json"  # LandmarkFunctions, beside the detector's checkpoint
ID_PREFIX = "det-"
PLACEMENTS = ("points", "nearby points", "typical depth")  # place_detections, surest first


@dataclass(frozen=True)
class LandmarkFunctions:
    """What a landmark is for, learned from a training set's annotation: by category where every landmark of the
    category has one function (objects), else by the text it reads (a sign's function names its room's)."""

    by_category: dict[str, str]
    by_text: dict[str, str]

    @classmethod
    def learn(cls, landmarks: Iterable[Mapping[str, str]]) -> LandmarkFunctions:
        """From rows with category, text and function (a global training set's landmarks)."""
        by_category: dict[str, Counter[str]] = defaultdict(Counter)
        by_text: dict[str, Counter[str]] = defaultdict(Counter)
        for row in landmarks:
            by_category[row["category"]][row["function"]] += 1
            if row["text"]:
                by_text[row["text"]][row["function"]] += 1
        return cls(
            by_category={c: next(iter(f)) for c, f in sorted(by_category.items()) if len(f) == 1},
            by_text={t: f.most_common(1)[0][0] for t, f in sorted(by_text.items())},
        )

    def function(self, category: str, text: str) -> str:
        """The function of a landmark of `category` reading `text`; "" where the training set cannot say."""
        return self.by_category.get(category) or self.by_text.get(text, "")

    def save(self, folder: Path | str) -> None:
        (Path(folder) / FUNCTIONS_FILE).write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder: Path | str) -> LandmarkFunctions:
        """The table saved in `folder`; an empty one where there is none (every function then "")."""
        path = Path(folder) / FUNCTIONS_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else cls({}, {})


@dataclass(frozen=True)
class ExtractionConfig:
    input_size: tuple[int, int] = (160, 120)  # width, height of the detector's training frames
    default_depth_m: float = 2.5  # along the optical axis, where no detection of the map was placed by points
    nearby_margin: float = 1.0  # of a box's size on each side: where points lend a box without any their depth
    min_sightings: int = 3  # pictures a landmark must be detected in (see the module docstring)
    min_shared_points: int = 3  # 3D points in boxes of one category and colour that make them one landmark, however far
    merge_radius_m: float = 1.0
    min_text_similarity: float = 0.5  # 1 - edit distance / length: signs read less alike than this are two signs
    duplicate_iou: float = 0.5  # boxes of one category in one picture overlapping this much are one landmark
    batch_size: int = 64


@dataclass(frozen=True)
class PlacedDetection:
    """A detection in a node's picture (box in the node's pixels) and where it lies in `map`."""

    node_id: str
    detection: Detection
    position: np.ndarray  # (3,)
    placement: str  # how it was placed: one of PLACEMENTS
    point_ids: frozenset[int] = frozenset()  # the reconstruction's points in its box


@dataclass(frozen=True)
class DetectedLandmark:
    """A landmark row before its embedding: what `describe` reads."""

    landmark_id: str
    category: str
    text: str
    color: str
    material: str
    function: str
    position: np.ndarray  # (3,) in map


def in_box(geometry: NodeGeometry, box: Box) -> np.ndarray:
    """(n,) bool: which of the node's keypoints fall inside the half-open pixel box."""
    x, y = geometry.keypoints[:, 0], geometry.keypoints[:, 1]
    x0, y0, x1, y1 = box
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


def ray_point(geometry: NodeGeometry, box: Box, depth_m: float) -> np.ndarray:
    """The point in map on the ray through the box's centre, `depth_m` in front of the camera."""
    x0, y0, x1, y1 = box
    pixel = np.array([(x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5, 1.0])  # in K's pixels, centres at integers
    in_camera = np.linalg.solve(geometry.k, pixel) * depth_m
    return geometry.map_from_camera[:3, :3] @ in_camera + geometry.map_from_camera[:3, 3]


def camera_depth(geometry: NodeGeometry, position: np.ndarray) -> float:
    """How far in front of the camera (along its optical axis) a point in map lies."""
    rotation, translation = geometry.map_from_camera[:3, :3], geometry.map_from_camera[:3, 3]
    return float((rotation.T @ (position - translation))[2])


def widened(box: Box, margin: float) -> Box:
    """The box grown on each side by `margin` times its width (height), to whole pixels."""
    x0, y0, x1, y1 = box
    dx, dy = math.ceil(margin * (x1 - x0)), math.ceil(margin * (y1 - y0))
    return x0 - dx, y0 - dy, x1 + dx, y1 + dy


def place_detections(
    views: Sequence[NodeView], detections: Sequence[Sequence[Detection]], config: ExtractionConfig
) -> list[PlacedDetection]:
    """Each detection in `map`, in the order given: at the median of the points in its box; else on its ray at the
    median depth of the points around the box (`nearby_margin`: a sign on a wall, a plant before it); else on its ray
    at its category's typical depth in these views."""
    sightings = [(view, d) for view, found in zip(views, detections, strict=True) for d in found]
    inside = [in_box(view.geometry, d.box) for view, d in sightings]
    depths: dict[str, list[float]] = defaultdict(list)
    for (view, d), mask in zip(sightings, inside, strict=True):
        if mask.any():
            depths[d.category].append(camera_depth(view.geometry, np.median(view.geometry.points[mask], axis=0)))
    every_depth = [depth for category_depths in depths.values() for depth in category_depths]
    overall = float(np.median(every_depth)) if every_depth else config.default_depth_m
    typical = {category: float(np.median(d)) for category, d in depths.items()}
    placed = []
    for (view, d), mask in zip(sightings, inside, strict=True):
        geometry = view.geometry
        if mask.any():
            position, placement = np.median(geometry.points[mask], axis=0), "points"
        elif (nearby := in_box(geometry, widened(d.box, config.nearby_margin))).any():
            depth = float(np.median([camera_depth(geometry, p) for p in geometry.points[nearby]]))
            position, placement = ray_point(geometry, d.box, depth), "nearby points"
        else:
            position, placement = ray_point(geometry, d.box, typical.get(d.category, overall)), "typical depth"
        placed.append(
            PlacedDetection(view.node_id, d, position, placement, frozenset(geometry.point_ids[mask].tolist()))
        )
    return placed


def text_similarity(a: str, b: str) -> float:
    """1 - edit distance over the longer length: 1 for equal readings, 0 for nothing in common."""
    return 1.0 - edit_distance(a, b) / max(len(a), len(b), 1)


def group_detections(
    placed: Sequence[PlacedDetection], text_categories: Iterable[str], config: ExtractionConfig
) -> list[list[int]]:
    """Indices into `placed`, one list per physical landmark (see the module docstring), in order of first sighting.

    Greedy: detections placed the surest way (PLACEMENTS), then the best scored, join the nearest group that admits
    them, so that groups grow from where landmarks are surest.
    """
    signs = set(text_categories)
    order = sorted(
        range(len(placed)), key=lambda i: (PLACEMENTS.index(placed[i].placement), -placed[i].detection.score, i)
    )
    groups: dict[tuple[str, str], list[list[int]]] = defaultdict(list)  # (category, colour) -> groups
    positions: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    point_ids: dict[tuple[str, str], list[set[int]]] = defaultdict(list)
    for i in order:
        detection = placed[i].detection
        key = (detection.category, detection.color)
        best, best_rank = None, None
        for g, members in enumerate(groups[key]):
            if any(placed[m].node_id == placed[i].node_id for m in members):
                continue
            if detection.category in signs and not _readings_agree(detection.text, members, placed, config):
                continue
            distance = float(np.linalg.norm(positions[key][g] - placed[i].position))
            shared = len(point_ids[key][g] & placed[i].point_ids)
            if shared >= config.min_shared_points or distance <= config.merge_radius_m:
                rank = (-min(shared, config.min_shared_points), distance)  # one surface seen first, then nearness
                if best_rank is None or rank < best_rank:
                    best, best_rank = g, rank
        if best is None:
            groups[key].append([i])
            positions[key].append(placed[i].position)
            point_ids[key].append(set(placed[i].point_ids))
        else:
            groups[key][best].append(i)
            positions[key][best] = group_position([placed[m] for m in groups[key][best]])
            point_ids[key][best] |= placed[i].point_ids
    return sorted((sorted(members) for by_key in groups.values() for members in by_key), key=lambda m: m[0])


def _readings_agree(
    text: str, members: Sequence[int], placed: Sequence[PlacedDetection], config: ExtractionConfig
) -> bool:
    reading = majority_text([placed[m].detection.text for m in members])
    return not text or not reading or text_similarity(text, reading) >= config.min_text_similarity


def majority_text(texts: Iterable[str]) -> str:
    """The most common non-empty reading, the first seen among equals; "" where nothing was read."""
    counts = Counter(text for text in texts if text)
    return counts.most_common(1)[0][0] if counts else ""


def group_position(members: Sequence[PlacedDetection]) -> np.ndarray:
    """The median of the members placed the surest way (PLACEMENTS): a depth on a ray is a guess beside points."""
    surest = min(PLACEMENTS.index(m.placement) for m in members)
    return np.median(np.array([m.position for m in members if PLACEMENTS.index(m.placement) == surest]), axis=0)


class DetectedLandmarkExtractor(LandmarkExtractor):
    """Landmarks from the nodes' pictures alone, by the learned detector; see the module docstring.

    Needs each view's `image` (RGB at the node's recorded resolution) and `geometry` (its camera pose, intrinsics
    and the reconstruction's points it sees).
    """

    needs_pictures = True

    def __init__(
        self,
        checkpoint: Path | str = DEFAULT_CHECKPOINT,
        config: ExtractionConfig = ExtractionConfig(),
        text_encoder: TextEncoder | None = None,
    ) -> None:
        self.detector = LandmarkDetector.from_pretrained(str(checkpoint))
        self.functions = LandmarkFunctions.load(checkpoint)
        self.config = config
        self.text_encoder = text_encoder or TextEncoder.from_pretrained()

    def detect(self, views: Sequence[NodeView]) -> list[list[Detection]]:
        """Each view's detections, boxes in its own pixels, duplicates in one picture dropped."""
        width, height = self.config.input_size
        found = []
        for start in range(0, len(views), self.config.batch_size):
            batch = views[start : start + self.config.batch_size]
            pictures = [v.picture() for v in batch]
            shrunk = [
                np.asarray(Image.fromarray(p).resize((width, height), Image.Resampling.BILINEAR)) for p in pictures
            ]
            found_in_batch = self.detector.detect(shrunk, self.config.batch_size)
            for picture, detections in zip(pictures, found_in_batch, strict=True):
                scaled = [_scaled(d, self.config.input_size, picture.shape) for d in detections]
                found.append(_without_duplicates(scaled, self.config.duplicate_iou))
        return found

    def extract(self, views: Sequence[NodeView]) -> LandmarkObservations:
        started = time.perf_counter()
        lacking = [v.node_id for v in views if not v.has_picture or v.geometry is None]
        if lacking:
            raise ValueError(f"node {lacking[0]}: the detector extractor needs each node's picture and camera geometry")
        placed = place_detections(views, self.detect(views), self.config)
        groups = group_detections(placed, self.detector.config.text_categories, self.config)
        groups = [g for g in groups if len(g) >= self.config.min_sightings]
        landmarks = [self._landmark(f"{ID_PREFIX}{n:04d}", [placed[i] for i in g]) for n, g in enumerate(groups)]
        embeddings = self.text_encoder.encode([describe(lm, "") for lm in landmarks])
        rows = [
            {
                "landmark_id": lm.landmark_id,
                "category": lm.category,
                "text": lm.text,
                "color": lm.color,
                "material": lm.material,
                "function": lm.function,
                "room": "",  # a picture does not say which room it shows
                **{f"position_{a}": float(v) for a, v in zip("xyz", lm.position, strict=True)},
                "embedding": embedding.tolist(),
            }
            for lm, embedding in zip(landmarks, embeddings, strict=True)
        ]
        sightings = [
            {
                "node_id": placed[i].node_id,
                "landmark_id": lm.landmark_id,
                **dict(zip(("box_x0", "box_y0", "box_x1", "box_y1"), placed[i].detection.box, strict=True)),
                "visible_fraction": placed[i].detection.score,
            }
            for lm, members in zip(landmarks, groups, strict=True)
            for i in members
        ]
        seconds = time.perf_counter() - started
        placements = Counter(p.placement for p in placed)
        report = {
            "nodes": len(views),
            "detections": len(placed),
            "placed_by": {how: placements[how] for how in PLACEMENTS},
            "sightings": sum(map(len, groups)),  # detections kept: of landmarks seen in `min_sightings` pictures
            "landmarks": len(landmarks),
            "seconds": round(seconds, 3),
            "seconds_per_node": round(seconds / len(views), 5) if views else None,
        }
        return LandmarkObservations(
            landmark_table("landmarks", rows), landmark_table("node_landmarks", sightings), report
        )

    def _landmark(self, landmark_id: str, members: Sequence[PlacedDetection]) -> DetectedLandmark:
        first = members[0].detection
        text = majority_text(m.detection.text for m in members)  # the detector reads signs only
        return DetectedLandmark(
            landmark_id=landmark_id,
            category=first.category,
            text=text,
            color=first.color,
            material=Counter(m.detection.material for m in members).most_common(1)[0][0],
            function=self.functions.function(first.category, text),
            position=group_position(members),
        )


def _scaled(detection: Detection, size: tuple[int, int], shape: tuple[int, ...]) -> Detection:
    """The detection in a picture of `size` (width, height) with its box scaled to a picture of `shape` (height,
    width, ...), widened to whole pixels."""
    x0, y0, x1, y1 = detection.box
    height, width = shape[:2]
    sx, sy = width / size[0], height / size[1]
    box = (
        max(math.floor(x0 * sx), 0),
        max(math.floor(y0 * sy), 0),
        min(math.ceil(x1 * sx), width),
        min(math.ceil(y1 * sy), height),
    )
    return replace(detection, box=box)


def _without_duplicates(detections: Sequence[Detection], iou: float) -> list[Detection]:
    """Best first, each dropped where a better one of its category overlaps it by `iou` or more."""
    kept: list[Detection] = []
    for d in detections:
        if not any(k.category == d.category and box_iou(k.box, d.box) >= iou for k in kept):
            kept.append(d)
    return kept
