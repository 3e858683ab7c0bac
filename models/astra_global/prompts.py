"""What Astra-Global reads: a query (camera images, the map's landmark list, optionally its graph, reference images
and an instruction) written as one prompt of tokens.

    <s> [images] <map> <L0> red metal fire extinguisher <L1> white sign radiology ...
        [<graph> <N0> <L1> <L4> <N1> <L0> ...] [<reference> <N5> [reference images]]
        <localize> <answer>                          (localization: the answer is models.astra_global.answers')
    <s> <goal> where can I check in as a visitor? <answer>
                               (a text goal: the answer is the place it names, in words: "reception desk")

Each image is `<|vision_start|>` + one `<|image_pad|>` per merged patch + `<|vision_end|>`, as Qwen2-VL expects; the
model splices its vision encoder's output over the pads. `<Lk>` and `<Nk>` are positions in this prompt, so a map
with more landmarks or nodes than the grammar holds must be cut to a candidate subset before it is asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.astra_global.answers import Answer, landmark_token, node_token

MAP, GRAPH, REFERENCE, LOCALIZE, GOAL, ANSWER = "<map>", "<graph>", "<reference>", "<localize>", "<goal>", "<answer>"
BOS = "<s>"
# Qwen2-VL's own names for its vision placeholders; video is never used, but the config needs its id.
IMAGE_START, IMAGE_PAD, IMAGE_END, VIDEO_PAD = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>"
PROMPT_TOKENS = (BOS, MAP, GRAPH, REFERENCE, LOCALIZE, GOAL, ANSWER, IMAGE_START, IMAGE_PAD, IMAGE_END, VIDEO_PAD)


@dataclass(frozen=True)
class Query:
    """One question to the model. Images are RGB (H, W, 3) uint8, one per camera; the landmark list holds one short
    description per landmark (describe_landmark); `nodes` lists each graph node's landmarks as positions in that list.
    With an instruction it is a goal query (goal_query), else a localization query."""

    landmarks: Sequence[str]
    images: Sequence[np.ndarray] = ()
    nodes: Sequence[Sequence[int]] = ()
    instruction: str | None = None
    reference_node: int | None = None
    reference_images: Sequence[np.ndarray] = ()

    def __post_init__(self) -> None:
        if self.reference_images and self.reference_node is None:
            raise ValueError("reference images need the reference node they were taken at")

    @property
    def all_images(self) -> list[np.ndarray]:
        """The images in prompt order: the query's, then the reference node's."""
        return [*self.images, *self.reference_images]


@dataclass(frozen=True)
class Example:
    """A query with its true answer: a training example, and the truth the rewards score against."""

    query: Query
    answer: Answer | str  # a text goal's answer is its place in words (maps.goal_place)


def goal_query(instruction: str) -> Query:
    """A text goal's query: the instruction alone. The map enters through the answers scored, its places
    (models.astra_global.goals): a model this small, trained from scratch, neither pointed into a listed map nor
    judged its landmarks one by one well enough (README, sessions 19-22)."""
    return Query(landmarks=(), instruction=instruction)


def describe_landmark(category: str, color: str = "", material: str = "", text: str = "", function: str = "") -> str:
    """A landmark's line in the map list: 'red metal fire extinguisher', 'white sign radiology', with ': function' when
    given (text goals are matched against functions)."""
    words = " ".join(part for part in (color, material, category, text) if part)
    return f"{words}: {function}" if function else words


def prompt_text(query: Query, image_tokens: Sequence[int]) -> str:
    """The query's prompt, with image_tokens[i] pads for its i-th image (Query.all_images order)."""
    if len(image_tokens) != len(query.all_images):
        raise ValueError(f"{len(query.all_images)} images but {len(image_tokens)} image token counts")
    images = [IMAGE_START + IMAGE_PAD * n + IMAGE_END for n in image_tokens]
    parts = [BOS, *images[: len(query.images)]]
    if query.landmarks:
        parts += [MAP, *(f"{landmark_token(i)} {text}" for i, text in enumerate(query.landmarks))]
    if query.nodes:
        parts.append(GRAPH)
        parts += [node_token(j) + "".join(map(landmark_token, seen)) for j, seen in enumerate(query.nodes)]
    if query.reference_node is not None:
        parts += [REFERENCE, node_token(query.reference_node), *images[len(query.images) :]]
    parts += [LOCALIZE] if query.instruction is None else [GOAL, f" {query.instruction}"]
    return "".join([*parts, ANSWER])
