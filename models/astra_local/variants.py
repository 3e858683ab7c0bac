"""Every planner `astra train local` trains and `astra eval planning` runs, by name: the main model, the baselines
of the Astra paper's planning comparison (each with and without the masked ESDF loss), and the CUHK ablations.

The baselines share the main model's backbone and data, not its contrastive loss, which is CUHK's addition to it.
"""

from __future__ import annotations

from dataclasses import replace

from models.astra_local.encoder4d import Encoder4DConfig
from models.astra_local.planner import PlannerConfig

ENCODER = Encoder4DConfig()  # the committed encoder's: its tokens' count and width

MAIN = PlannerConfig(kind="fm")  # flow matching, masked ESDF loss, trajectory attention, action queries, contrastive
DEFAULT_PLANNER = "fm_esdf"

PLANNER_VARIANTS: dict[str, PlannerConfig] = {
    DEFAULT_PLANNER: MAIN,
    "fm": replace(MAIN, esdf_weight=0.0),
    **{
        f"{kind}{suffix}": replace(MAIN, kind=kind, contrastive_weight=0.0, **({} if suffix else {"esdf_weight": 0.0}))
        for kind in ("act", "vae", "dp", "bc")
        for suffix in ("_esdf", "")
    },
    "fm_esdf_causal": replace(MAIN, attention="causal"),
    "fm_esdf_per_waypoint": replace(MAIN, action_queries=False),
    "fm_esdf_no_contrastive": replace(MAIN, contrastive_weight=0.0),
    "fm_esdf_no_history": replace(MAIN, history=False),
    # The paper's conditioning in full: the 4D encoder's tokens of the cameras beside the costmap.
    "fm_esdf_voxels": replace(MAIN, voxel_tokens=ENCODER.token_grid**2, voxel_channels=ENCODER.bev_channels),
}
