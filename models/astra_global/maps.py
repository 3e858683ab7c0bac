"""The map as Astra-Global reads it, and the three stages of localization over it (ByteDance Astra, section 3):

1. coarse: the query's pictures and the map's landmark list in; the landmarks it sees out (`coarse_query`);
2. co-visibility filter: the keyframes that see most of those landmarks are the candidates (`covisible`), the best
   one's pose the coarse answer;
3. fine: the query's pictures and one candidate's reference pictures in; the pose relative to it out (`fine_query`).

A keyframe is the rig at one instant: its base pose in `map` (planar: x, y, yaw) and the landmarks any of its
cameras sees. Landmarks are positions in the map's list, as the prompt names them (`<Lk>`); the fine query lists
only the reference keyframe's landmarks, so that its prompt stays short whatever the map's size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.astra_global.answers import Answer, Pose
from models.astra_global.prompts import Query

REFERENCE_NODE = 0  # the fine query's reference is the only node it names


@dataclass(frozen=True)
class MapKeyframe:
    """The rig at one instant of the map: base_link's planar pose in `map`, the landmarks it sees (positions in the
    map's list) and, for the fine stage, its pictures (one per camera, in the rig's order)."""

    pose: tuple[float, float, float]  # x, y, yaw
    landmarks: tuple[int, ...]
    images: Sequence[np.ndarray] = ()


@dataclass(frozen=True)
class LandmarkMap:
    """The map's landmark list (one description per landmark, prompts.describe_landmark), the room each lies in
    where the map knows it ("" where not), and its keyframes."""

    landmarks: Sequence[str]
    keyframes: Sequence[MapKeyframe]
    rooms: Sequence[str] = ()  # per landmark, "" where the map does not know it
    categories: Sequence[str] = ()  # per landmark: what the text goals name
    texts: Sequence[str] = ()  # per landmark, what it reads ("" for most): a sign reading a room's name leads there

    def coarse_query(self, images: Sequence[np.ndarray]) -> Query:
        return Query(landmarks=self.landmarks, images=images)

    def goal_places(self) -> dict[str, list[int]]:
        """Every place of this map that a text goal can name, in the words the model writes (goal_place), with the
        positions of its landmarks in the list: each category, each room (its landmarks, then the signs that read its
        name), and each category in each room; where the map holds none of that category in that room, the room's
        landmarks (the robot goes to the room it was asked for)."""
        places: dict[str, list[int]] = {}
        rooms = self.rooms or [""] * len(self.categories)
        for i, (category, room) in enumerate(zip(self.categories, rooms, strict=True)):
            for place in (goal_place(room, category), goal_place(room, category, in_room=True), goal_place(room)):
                if place:
                    places.setdefault(place, []).append(i)
        for i, text in enumerate(self.texts):
            if text:
                places.setdefault(goal_place(text), []).append(i)
        for category in set(self.categories):
            for room in {room for room in rooms if room}:
                places.setdefault(goal_place(room, category, in_room=True), places[goal_place(room)])
        return places

    def fine_query(self, images: Sequence[np.ndarray], keyframe: int) -> Query:
        """The query against one keyframe: its landmarks listed (renumbered from 0) and its pictures as reference."""
        reference = self.keyframes[keyframe]
        return Query(
            landmarks=[self.landmarks[i] for i in reference.landmarks],
            images=images,
            reference_node=REFERENCE_NODE,
            reference_images=reference.images,
        )

    def covisible(self, landmarks: Sequence[int]) -> np.ndarray:
        """Keyframes that see at least one of `landmarks`, best first: most of them seen, then the fewest others (a
        keyframe that sees only what the query sees is likelier where it stands), then map order."""
        wanted = set(landmarks)
        shared = np.array([len(wanted.intersection(k.landmarks)) for k in self.keyframes])
        others = np.array([len(k.landmarks) for k in self.keyframes]) - shared
        order = np.lexsort((np.arange(len(shared)), others, -shared))
        return order[shared[order] > 0]

    def fine_answer(self, seen: Sequence[int], keyframe: int, pose: tuple[float, float, float]) -> Answer:
        """The true fine answer: the seen landmarks among the reference's (in its list's numbering) and the pose."""
        listed = {landmark: i for i, landmark in enumerate(self.keyframes[keyframe].landmarks)}
        relative = relative_pose(self.keyframes[keyframe].pose, pose)
        return Answer(
            tuple(sorted(listed[i] for i in seen if i in listed)),
            (REFERENCE_NODE,),
            Pose(REFERENCE_NODE, *relative),
        )

    def absolute_pose(self, keyframe: int, pose: Pose) -> tuple[float, float, float]:
        """A fine answer's pose (relative to `keyframe`) in `map`."""
        x, y, yaw = self.keyframes[keyframe].pose
        c, s = math.cos(yaw), math.sin(yaw)
        return x + c * pose.dx - s * pose.dy, y + s * pose.dx + c * pose.dy, math.remainder(yaw + pose.dyaw, math.tau)


def leads_to_room(room: str, text: str, goal_room: str) -> bool:
    """A landmark (in `room`, reading `text`) named as a goal gets the robot to `goal_room`: it lies there, or it is
    a sign reading the room's name."""
    return goal_room in (room, text)


def goal_place(goal_room: str, category: str = "", in_room: bool = False) -> str:
    """What a text goal names, in the model's words (lower case, single spaces): a room ("take me to the Kitchen"), a
    category of furniture ("I want a glass of water": any water cooler, all in one room), or a category in a room
    ("the sofa in the Lounge"); "" where a room is asked for but unknown."""
    words = category if category and not in_room else f"{category} in {goal_room}" if category else goal_room
    return "" if in_room and not goal_room else " ".join(words.lower().split())


def coarse_answer(seen: Sequence[int]) -> Answer:
    """The true coarse answer: the map landmarks the query sees, and no node (the filter picks those)."""
    return Answer(tuple(sorted(set(seen))), ())


def relative_pose(
    reference: tuple[float, float, float], pose: tuple[float, float, float]
) -> tuple[float, float, float]:
    """`pose` in the frame of `reference` (both planar x, y, yaw in one frame): dx, dy, dyaw."""
    x, y, yaw = reference
    c, s = math.cos(yaw), math.sin(yaw)
    dx, dy = pose[0] - x, pose[1] - y
    return c * dx + s * dy, -s * dx + c * dy, math.remainder(pose[2] - yaw, math.tau)
