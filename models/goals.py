"""Text goals on the map: an instruction ("take me to radiology", "I need to print something") -> a goal node and pose.

The instruction's MiniLM embedding is compared (cosine) with descriptions of what the map knows: each room by the
name its signs give it, by what its signs say it is for ("Loading dock: truck loading and unloading") and by each
thing its furniture says ("Print room: copier, prints and copies documents"), and each landmark by its category
and function ("copier, prints and copies documents") and by its category and room ("copier in the Print room"); a
goal scores its best description. Keeping the room out of a landmark's first description leaves equal landmarks in
different rooms equal for "a potted plant", so the nearest wins, while "the plant in the Lounge" picks its room by
the second. Descriptions are encoded once; a query costs one encode call.

Goals are map nodes, whose base_link stands in free space, never a landmark's position (inside a shelf, on a wall):

- a room's goal is the medoid of its surest nodes. The map does not say which room a node is in, so each keyframe
  (the rig's cameras at one instant) takes the room of the landmarks that fill most of its pictures (box pixels,
  the nearer counting more: a rack beside the robot fills a picture, furniture seen through a door does not);
  keyframes that give `CLEAR_SHARE` of their vote to the room are its surest, as keyframes looking into a room
  from its door split theirs. A room that no keyframe is taken for has its goal at the node nearest the middle of
  the landmarks in it (a corridor lined with signs to the rooms off it), or, where none was seen in it either, where
  its sign is seen best;
- a landmark's goal is, among the nodes that see it, the one nearest to it and to its room's goal together,
  facing the landmark.

Where several candidates score within `margin` of the best, the one nearest the robot wins. Below `threshold`
(calibrated in benchmarks/goals.py on the phrasing bank against nonsense) nothing matches: goal_not_found.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from scipy.spatial.distance import cdist

from models.routing import base_poses
from models.text_encoder import TextEncoder
from schemas.world import room_function_of_sign

SIGN_CATEGORIES = ("room sign", "aisle sign")  # landmark categories whose text names the room they lead to
CLEAR_SHARE = 0.8  # of a keyframe's vote, for its nodes to count among the surest of their room


class _Sighting(NamedTuple):
    node: int  # index of the node that sees the landmark
    fraction: float  # of the landmark in view
    area: int  # pixels of its box in the node's picture


@dataclass(frozen=True)
class GoalConfig:
    # Best cosine below this: goal_not_found. On the prepared maps the phrasing bank scores 0.35 and more but for
    # tasks the map cannot know (no room functions), nonsense 0.31 and less but for look-alikes ("order a pizza").
    threshold: float = 0.32
    margin: float = 0.005  # candidates this close to the best count as equally good; the nearest wins


@dataclass(frozen=True)
class GoalCandidate:
    label: str  # what matched: room name or landmark description
    kind: str  # "room" | "landmark"
    room: str  # the room the goal lies in (as the map names it)
    score: float  # cosine similarity
    node_id: str  # the goal node (a map node in that room / seeing that landmark)
    pose: tuple[float, float, float]  # x, y, yaw of base_link in `map` where the robot should stop


@dataclass(frozen=True)
class GoalResult:
    goal: GoalCandidate | None  # None: goal_not_found
    candidates: tuple[GoalCandidate, ...]  # the three closest, best first


class GoalResolver:
    """Resolves instructions on one map; built once, then `resolve` per instruction."""

    def __init__(
        self,
        nodes: pa.Table,
        landmarks: pa.Table,
        node_landmarks: pa.Table,
        encoder: TextEncoder,
        config: GoalConfig = GoalConfig(),
    ) -> None:
        self.encoder = encoder
        self.config = config
        node_ids = nodes["node_id"].to_pylist()
        poses = base_poses(nodes)
        index = {node: i for i, node in enumerate(node_ids)}
        lm = landmarks.select(["landmark_id", "category", "text", "function", "room"]).to_pylist()
        lm_xy = np.column_stack([landmarks["position_x"].to_numpy(), landmarks["position_y"].to_numpy()])
        lm_index = {row["landmark_id"]: i for i, row in enumerate(lm)}
        views = defaultdict(list)  # landmark index -> (node index, visible fraction) of each sighting
        for s in node_landmarks.to_pylist():
            area = (s["box_x1"] - s["box_x0"]) * (s["box_y1"] - s["box_y0"])
            views[lm_index[s["landmark_id"]]].append(_Sighting(index[s["node_id"]], s["visible_fraction"] or 0.0, area))
        signs = [j for j, row in enumerate(lm) if row["category"] in SIGN_CATEGORIES and row["text"]]
        objects = [j for j, row in enumerate(lm) if row["category"] not in SIGN_CATEGORIES and row["room"] and views[j]]

        texts: dict[str, list[str]] = defaultdict(list)  # room -> its descriptions beyond its name
        for j in objects:
            texts[lm[j]["room"]].append(", ".join(filter(None, (lm[j]["category"], lm[j]["function"]))))
        for j in signs:
            texts[lm[j]["text"]].append(room_function_of_sign(lm[j]["function"] or "", lm[j]["text"]))
        room_nodes = _room_nodes(views, lm, lm_xy, poses, _keyframes(nodes))
        located = defaultdict(list)  # room -> the seen landmarks that hang or stand in it
        for j, row in enumerate(lm):
            if row["room"] and views[j]:
                located[row["room"]].append(j)
        room_goals = {}  # room -> its goal node
        for room in sorted(texts.keys() | room_nodes.keys() | located.keys()):
            if room_nodes[room]:
                room_goals[room] = _room_goal(room_nodes[room], poses)
            elif located[room]:
                # A corridor's keyframes vote for the rooms and aisles whose racks and furniture fill their
                # pictures; what hangs in it (signs to those rooms, extinguishers) lines its two sides.
                middle = lm_xy[located[room]].mean(axis=0)
                room_goals[room] = int(np.argmin(np.hypot(*(poses[:, :2] - middle).T)))
            elif sign_views := [view for j in signs if lm[j]["text"] == room for view in views[j]]:
                room_goals[room] = max(sign_views, key=lambda view: view.fraction).node

        self._candidates: list[GoalCandidate] = []  # scores are filled in per query
        descriptions, owners = [], []  # owners: the candidate each description describes
        for room, node in room_goals.items():
            described = [room, *(f"{room}: {text}" for text in sorted(set(filter(None, texts[room]))))]
            owners += [len(self._candidates)] * len(described)
            pose = tuple(poses[node].tolist())
            self._candidates.append(GoalCandidate(room, "room", room, 0.0, node_ids[node], pose))
            descriptions += described
        for j in objects:
            row = lm[j]
            node = self._view_node(views[j], lm_xy[j], poses, room_goals.get(row["room"]))
            dx, dy = lm_xy[j] - poses[node, :2]
            pose = (float(poses[node, 0]), float(poses[node, 1]), math.atan2(dy, dx))
            described = ", ".join(filter(None, (row["category"], row["function"])))
            label = f"{described}, in the {row['room']}"
            owners += [len(self._candidates)] * 2
            self._candidates.append(GoalCandidate(label, "landmark", row["room"], 0.0, node_ids[node], pose))
            descriptions += [described, f"{row['category']} in the {row['room']}"]
        self._embeddings = encoder.encode(descriptions) if descriptions else np.zeros((0, encoder.dim), np.float32)
        self._owners = np.array(owners, dtype=np.int64)
        self._xy = np.array([c.pose[:2] for c in self._candidates]).reshape(-1, 2)

    @staticmethod
    def _view_node(seen: list[_Sighting], landmark_xy: np.ndarray, poses: np.ndarray, room_goal: int | None) -> int:
        """Of the nodes that see the landmark, the one nearest to it and to its room's goal together."""
        nodes = np.array([view.node for view in seen])
        distance = np.hypot(*(poses[nodes, :2] - landmark_xy).T)
        if room_goal is not None:
            distance += np.hypot(*(poses[nodes, :2] - poses[room_goal, :2]).T)
        return int(nodes[np.argmin(distance)])

    @property
    def candidates(self) -> tuple[GoalCandidate, ...]:
        """Every goal the map offers, scores 0."""
        return tuple(self._candidates)

    def resolve(self, text: str, near_xy: tuple[float, float] | None = None) -> GoalResult:
        """The goal `text` names, preferring among equally good ones the nearest to `near_xy`."""
        if not self._candidates:
            return GoalResult(None, ())
        scores = np.full(len(self._candidates), -np.inf)
        np.maximum.at(scores, self._owners, self._embeddings @ self.encoder.encode([text])[0])
        order = np.argsort(-scores, kind="stable")
        best = order[0]
        if near_xy is not None:
            tied = order[scores[order] >= scores[best] - self.config.margin]
            best = tied[np.argmin(np.hypot(*(self._xy[tied] - np.asarray(near_xy)).T))]
        ranked = [best, *(i for i in order if i != best)][:3]
        candidates = tuple(replace(self._candidates[i], score=float(scores[i])) for i in ranked)
        goal = candidates[0] if scores[best] >= self.config.threshold else None
        return GoalResult(goal, candidates)


def _keyframes(nodes: pa.Table) -> list[tuple[str, int]]:
    """Each node's keyframe: the rig's cameras at one instant share (episode_id, t_ns)."""
    return list(zip(nodes["episode_id"].to_pylist(), nodes["t_ns"].to_pylist(), strict=True))


def _room_nodes(
    views: dict[int, list[_Sighting]],
    landmarks: list[dict],
    landmark_xy: np.ndarray,
    poses: np.ndarray,
    keyframes: list[tuple[str, int]],
) -> dict[str, list[tuple[int, float]]]:
    """Room -> its nodes, each with its keyframe's share of the vote for the room: each keyframe's nodes go to the
    room whose landmarks fill most of its pictures, the nearer ones counting more."""
    votes: dict[tuple[str, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for j, seen in views.items():
        for view in seen if landmarks[j]["room"] else ():
            distance = float(np.hypot(*(landmark_xy[j] - poses[view.node, :2])))
            votes[keyframes[view.node]][landmarks[j]["room"]] += view.area / (1.0 + distance)
    rooms: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for node, keyframe in enumerate(keyframes):
        if keyframe in votes:
            room = max(votes[keyframe], key=votes[keyframe].__getitem__)
            rooms[room].append((node, votes[keyframe][room] / sum(votes[keyframe].values())))
    return rooms


def _room_goal(members: list[tuple[int, float]], poses: np.ndarray) -> int:
    """The medoid of the room's surest nodes: where `CLEAR_SHARE` of their keyframe's vote went to the room (nodes
    that look into the room from its door split their vote), or of all its nodes if none is that sure."""
    sure = [node for node, share in members if share >= CLEAR_SHARE] or [node for node, _ in members]
    return _medoid(sure, poses)


def _medoid(members: list[int], poses: np.ndarray) -> int:
    """The member whose base position is nearest to all others, summed: inside the room where most of them are."""
    xy = poses[members, :2]
    return members[int(np.argmin(cdist(xy, xy).sum(axis=1)))]
