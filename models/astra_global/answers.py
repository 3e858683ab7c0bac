"""What Astra-Global writes: the answer grammar, its tokens, and a parser that rejects malformed answers.

An answer is one line of grammar tokens, every one a single token of the tokenizer (models.astra_global.tokenizer):

    <landmarks> <L3> <L17> <nodes> <N5> <N9> <pose> <N5> <dx+6> <dy-2> <dyaw+3> </s>
    '--------- coarse: seen landmarks --' '------ fine: pose relative to node 5 --'

- `<landmarks>` then the ids of the map landmarks the query sees, each once: `<Lk>` is the k-th landmark of the
  prompt's map list (ids are positions in the prompt, not the map's own ids, so that one vocabulary serves every map);
- `<nodes>` then the ids of the candidate map nodes, each once: `<Nk>` is the k-th node of the prompt's graph;
- optionally `<pose>`, a reference node, and the pose of the robot in that node's frame, quantised: `<dx±i>` and
  `<dy±j>` are i·step metres (clamped to ±range), `<dyaw±k>` is k·yaw_step, wrapped into [-180°, 180°);
- `</s>`, the end of the answer (the tokenizer's eos).

A text goal's answer is not in this grammar: it is the place the instruction names, in words (maps.goal_place).
Anything else (a segment out of order, a repeated id, a word, a missing end, a half pose) parses to None, which the
format reward scores 0.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

LANDMARKS, NODES, POSE, END = "<landmarks>", "<nodes>", "<pose>", "</s>"
_BIN = re.compile(r"<(dx|dy|dyaw)([+-]\d+)>")


@dataclass(frozen=True)
class Pose:
    """The robot's planar pose in a reference node's frame: metres and radians."""

    node: int
    dx: float
    dy: float
    dyaw: float


@dataclass(frozen=True)
class Answer:
    """A parsed answer: landmark ids, node ids (prompt positions), and for localization optionally a pose."""

    landmarks: tuple[int, ...]
    nodes: tuple[int, ...]
    pose: Pose | None = None


@dataclass(frozen=True)
class AnswerGrammar:
    """The sizes of the answer vocabulary: how many landmarks and nodes a prompt may list, and the pose bins."""

    max_landmarks: int = 128
    max_nodes: int = 256
    pose_range_m: float = 4.0
    pose_step_m: float = 0.25
    yaw_step_deg: float = 10.0

    @property
    def _xy_bins(self) -> int:
        return round(self.pose_range_m / self.pose_step_m)

    @property
    def _yaw_bins(self) -> int:
        return round(180.0 / self.yaw_step_deg)

    def tokens(self) -> list[str]:
        """Every token an answer can hold, in a fixed order (the tokenizer gives them fixed ids)."""
        xy = range(-self._xy_bins, self._xy_bins + 1)
        yaw = range(-self._yaw_bins, self._yaw_bins)
        return [
            LANDMARKS,
            NODES,
            POSE,
            *(landmark_token(i) for i in range(self.max_landmarks)),
            *(node_token(i) for i in range(self.max_nodes)),
            *(f"<dx{i:+d}>" for i in xy),
            *(f"<dy{i:+d}>" for i in xy),
            *(f"<dyaw{i:+d}>" for i in yaw),
        ]

    def encode(self, answer: Answer) -> list[str]:
        """The answer's tokens, ending with END; the pose is rounded to its bins."""
        tokens = [LANDMARKS, *map(landmark_token, answer.landmarks), NODES, *map(node_token, answer.nodes)]
        if answer.pose is not None:
            pose = answer.pose
            xy = [max(-self._xy_bins, min(self._xy_bins, round(v / self.pose_step_m))) for v in (pose.dx, pose.dy)]
            yaw = round(math.degrees(pose.dyaw) / self.yaw_step_deg)
            yaw = (yaw + self._yaw_bins) % (2 * self._yaw_bins) - self._yaw_bins
            tokens += [POSE, node_token(pose.node), f"<dx{xy[0]:+d}>", f"<dy{xy[1]:+d}>", f"<dyaw{yaw:+d}>"]
        return [*tokens, END]

    def parse(self, tokens: Sequence[str]) -> Answer | None:
        """The answer these tokens spell up to the first END, or None if they break the grammar."""
        if END not in tokens:
            return None
        body = list(tokens[: list(tokens).index(END)])
        if body[:1] != [LANDMARKS] or NODES not in body:
            return None
        split = body.index(NODES)
        landmarks = self._ids(body[1:split], "L")
        rest = body[split + 1 :]
        tail = rest.index(POSE) if POSE in rest else len(rest)
        nodes = self._ids(rest[:tail], "N")
        if landmarks is None or nodes is None:
            return None
        if tail == len(rest):
            return Answer(landmarks, nodes)
        pose = self._pose(rest[tail + 1 :])
        return None if pose is None else Answer(landmarks, nodes, pose)

    def _ids(self, tokens: list[str], kind: str) -> tuple[int, ...] | None:
        ids = [self._id_of.get(token) for token in tokens]
        if any(id_ is None or id_[0] != kind for id_ in ids) or len(set(ids)) != len(ids):
            return None
        return tuple(id_[1] for id_ in ids)

    def _pose(self, tokens: list[str]) -> Pose | None:
        if len(tokens) != 4 or (node := self._ids(tokens[:1], "N")) is None:
            return None
        # Only tokens of this grammar count: a bin past the range is not a pose.
        bins = [_BIN.fullmatch(token) if token in self._all else None for token in tokens[1:]]
        if [b[1] if b else None for b in bins] != ["dx", "dy", "dyaw"]:
            return None
        dx, dy, dyaw = (int(b[2]) for b in bins)
        return Pose(node[0], dx * self.pose_step_m, dy * self.pose_step_m, math.radians(dyaw * self.yaw_step_deg))

    @functools.cached_property
    def _all(self) -> frozenset[str]:
        return frozenset(self.tokens())

    @functools.cached_property
    def _id_of(self) -> dict[str, tuple[str, int]]:
        ids = {landmark_token(i): ("L", i) for i in range(self.max_landmarks)}
        return ids | {node_token(i): ("N", i) for i in range(self.max_nodes)}


def landmark_token(index: int) -> str:
    return f"<L{index}>"


def node_token(index: int) -> str:
    return f"<N{index}>"
