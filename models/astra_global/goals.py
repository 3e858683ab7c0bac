"""Text goals by Astra-Global: the model judges each landmark of the map against the instruction
(LandmarkMap.goal_queries), and the landmarks it judges goals are ranked by how sure it is."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.astra_global.answers import LANDMARKS, NODES, landmark_token
from models.astra_global.maps import LandmarkMap
from models.astra_global.model import AstraGlobal
from models.astra_global.prompts import Query


@torch.no_grad()
def goal_log_odds(model: AstraGlobal, queries: Sequence[Query], batch_size: int = 64) -> np.ndarray:
    """For each goal query, how sure the model is that its landmark is a goal: after `<landmarks>`, the log-odds of
    naming it (`<L0>`) against naming none (`<nodes>` next), goal_answer's two answers. Positive where greedy says
    yes."""
    landmarks, first, none = model.tokenizer.convert_tokens_to_ids([LANDMARKS, landmark_token(0), NODES])
    training = model.model.training
    model.model.eval()
    odds = []
    for start in range(0, len(queries), batch_size):
        batch = queries[start : start + batch_size]
        logits = model.model(**model.inputs(batch, [[landmarks]] * len(batch))).logits[:, -1]
        odds.append((logits[:, first] - logits[:, none]).float().cpu().numpy())
    model.model.train(training)
    return np.concatenate(odds) if odds else np.zeros(0)


def find_goals(model: AstraGlobal, landmark_map: LandmarkMap, instruction: str) -> list[int]:
    """Positions in the map's list of the landmarks the model judges goals of `instruction`, surest first; empty
    where it judges none a goal."""
    odds = goal_log_odds(model, landmark_map.goal_queries(instruction))
    return [int(i) for i in np.argsort(-odds, kind="stable") if odds[i] > 0]
