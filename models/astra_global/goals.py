"""Text goals by Astra-Global: the model writes the place an instruction names ("kitchen", "water cooler", "sofa in
lounge"), and its answer is read against the map: every place the map holds (LandmarkMap.goal_places) is scored by
how likely the model is to write it, and the likeliest place's landmarks are the goals. Decoding is held to the map's
places as the localization answers are held to its landmark ids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.astra_global.maps import LandmarkMap
from models.astra_global.model import IGNORE, AstraGlobal
from models.astra_global.prompts import goal_query


@torch.no_grad()
def place_log_likelihoods(
    model: AstraGlobal, instruction: str, places: Sequence[str], batch_size: int = 64
) -> np.ndarray:
    """For each place, the log-probability that the model answers `instruction` with it: its words, then END."""
    query = goal_query(instruction)
    training = model.model.training
    model.model.eval()
    scores = []
    for start in range(0, len(places), batch_size):
        batch = places[start : start + batch_size]
        inputs = model.inputs([query] * len(batch), [model.answer_ids(place) for place in batch])
        labels = inputs.pop("labels")[:, 1:]
        log_probs = model.model(**inputs).logits[:, :-1].float().log_softmax(-1)
        scored = labels != IGNORE
        picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        scores.append((picked * scored).sum(-1).cpu().numpy())
    model.model.train(training)
    return np.concatenate(scores) if scores else np.zeros(0)


def find_goals(model: AstraGlobal, landmark_map: LandmarkMap, instruction: str) -> list[int]:
    """Positions in the map's list of the landmarks at the places the model names for `instruction`, the likeliest
    place's first; empty where the map holds no place."""
    places = landmark_map.goal_places()
    names = list(places)
    scores = place_log_likelihoods(model, instruction, names)
    return list(dict.fromkeys(i for k in np.argsort(-scores, kind="stable") for i in places[names[k]]))
