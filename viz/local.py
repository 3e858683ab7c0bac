"""Log Astra-Local's windows to Rerun: what a planner sees, what it learns from, and what it samples.

One window per step of the `window` timeline (and at its time on `robot_time`), every picture in the robot's frame
at the window's frame, x to the right and y up, `G x G` cells of the training set's geometry:
- `local/costmap`: the robot's own costmap at that frame (free, occupied, unknown);
- `local/truth/now` and `local/truth/ahead`: the true occupancy (walls, furniture, people and carts) now and
  `esdf_ahead_s` later, the second the world the planner's masked ESDF loss looks ahead to;
- `local/esdf`: the true ESDF now (m);
- `local/bev`: given the lifted frames, the odometry head's bird's-eye view (obstacles red, floor green);
- `local/overlay/*`, drawn over each picture: the expert's trajectory (green), the subgoal (red), and given a
  planner its samples (thin grey) and the one serving follows (blue, the nearest their mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rerun as rr
import rerun.blueprint as rrb
import torch

from datasets.local_windows import LocalWindows
from models.astra_local.planner import LocalPlannerModel
from models.astra_local.serving import by_distance_to_mean
from schemas.local_dataset import LocalGeometry
from viz.episode import APPLICATION_ID, TIMELINE

WINDOW_TIMELINE = "window"
PICTURES = {
    "costmap": "Robot's costmap",
    "truth/now": "True occupancy now",
    "truth/ahead": "True occupancy ahead",
    "esdf": "True ESDF (m)",
    "bev": "Odometry BEV",
}
OVERLAY = "local/overlay"
COLORS = {"expert": [40, 200, 80], "goal": [230, 40, 40], "samples": [150, 150, 150], "chosen": [40, 120, 220]}


def ego_pixels(xy: np.ndarray, geometry: LocalGeometry) -> np.ndarray:
    """Points [N, 2] in the robot's frame (m) as pixels of the pictures: x right, y up, the robot in the middle."""
    half = geometry.grid / 2
    return np.column_stack([xy[:, 0] / geometry.resolution + half, half - xy[:, 1] / geometry.resolution])


def _upright(grid: np.ndarray) -> np.ndarray:
    """A grid of rows along y as a picture with y up."""
    return np.ascontiguousarray(np.flipud(grid))


def local_blueprint() -> rrb.Blueprint:
    views = [
        rrb.Spatial2DView(origin="local", contents=[f"local/{path}", f"{OVERLAY}/**"], name=name)
        for path, name in PICTURES.items()
    ]
    return rrb.Blueprint(rrb.Grid(*views), rrb.BlueprintPanel(state="collapsed"))


def log_window(
    rec: rr.RecordingStream,
    window: dict[str, torch.Tensor],
    geometry: LocalGeometry,
    samples: np.ndarray | None = None,
    bev: np.ndarray | None = None,
) -> None:
    """One window (LocalWindows' contract, no batch dimension); `samples` [S, K, 3] a planner's, `bev` the
    current frame's lifted grid [C, G, G]."""
    # The costmap input is 0 free, 1 occupied, 0.5 unknown: classes 1, 2, 3 (0 is no class in Rerun).
    costmap = np.round(window["occupancy"][-1].numpy() * 2).astype(np.uint8)
    classes = np.choose(costmap, [1, 3, 2]).astype(np.uint8)
    rec.log("local/costmap", rr.SegmentationImage(_upright(classes)))
    truth = window["true_occupancy"].numpy().astype(np.uint8)
    rec.log("local/truth/now", rr.SegmentationImage(_upright(truth[0] + 1)))
    rec.log("local/truth/ahead", rr.SegmentationImage(_upright(truth[1] + 1)))
    rec.log("local/esdf", rr.DepthImage(_upright(window["esdf"][0].numpy()), meter=1.0, colormap="viridis"))
    if bev is not None:
        picture = np.stack([bev[0], bev[1], np.zeros_like(bev[0])], axis=-1)
        rec.log("local/bev", rr.Image(_upright((np.clip(picture, 0, 1) * 255).astype(np.uint8))))
    expert = np.vstack([[0.0, 0.0], window["trajectory"][:, :2].numpy()])
    rec.log(f"{OVERLAY}/expert", rr.LineStrips2D([ego_pixels(expert, geometry)], colors=COLORS["expert"], radii=0.4))
    goal = ego_pixels(window["goal"].numpy()[None], geometry)
    rec.log(f"{OVERLAY}/goal", rr.Points2D(goal, colors=COLORS["goal"], radii=1.0))
    if samples is not None:
        strips = [ego_pixels(np.vstack([[0.0, 0.0], s[:, :2]]), geometry) for s in samples]
        rec.log(f"{OVERLAY}/samples", rr.LineStrips2D(strips, colors=COLORS["samples"], radii=0.2))
        chosen = strips[by_distance_to_mean(samples)[0]]
        rec.log(f"{OVERLAY}/chosen", rr.LineStrips2D([chosen], colors=COLORS["chosen"], radii=0.4))


def log_windows(
    rec: rr.RecordingStream,
    windows: LocalWindows,
    indices: Sequence[int],
    planner: LocalPlannerModel | None = None,
    samples: int = 8,
    bev: dict[int, np.ndarray] | None = None,
    seed: int = 0,
) -> None:
    """The windows at `indices`, one per step of the `window` timeline; `bev` maps a window's t_ns to its frame's
    lifted grid."""
    generator = torch.Generator().manual_seed(seed)
    t_ns = windows.index["t_ns"].to_numpy()
    for step, index in enumerate(indices):
        window = windows[int(index)]
        rec.set_time(WINDOW_TIMELINE, sequence=step)
        rec.set_time(TIMELINE, timestamp=np.datetime64(int(t_ns[index]), "ns"))
        drawn = None
        if planner is not None:
            with torch.no_grad():
                batch = {name: value[None] for name, value in window.items()}
                drawn = planner.sample(batch, samples, generator=generator)[0].numpy()
        frame = None if bev is None else bev.get(int(t_ns[index]))
        log_window(rec, window, windows.geometry, drawn, frame)


def local_recording(recording_id: str, rrd: Path | None) -> rr.RecordingStream:
    """A stream saving to `rrd` (else to a spawned viewer) with the local blueprint."""
    rec = rr.RecordingStream(APPLICATION_ID, recording_id=recording_id)
    if rrd is None:
        rec.spawn(default_blueprint=local_blueprint())
    else:
        rrd.parent.mkdir(parents=True, exist_ok=True)
        rec.save(rrd, default_blueprint=local_blueprint())
    return rec
