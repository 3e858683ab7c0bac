"""Astra-Local's 4D encoder: the lifting, the warp, the volume rendering and the occupancy IoU against hand-computed
cases, what the encoder reads, learning a small batch of ray-cast scenes, the occupancy ablation, the checkpoint
round trip, and the dataset reader over a small written training set."""

from __future__ import annotations

import io
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from datasets.encoder_sequences import ENCODER_CACHE, EncoderSequences
from datasets.local_windows import LocalWindows
from models.astra_local.encoder4d import (
    Encoder4D,
    Encoder4DConfig,
    camera_mounts,
    depth_centres,
    iou,
    lift_rays,
    moving_ious,
    pixel_rays,
    render,
    seen_cells,
    splat,
    warp,
)
from models.astra_local.serving import ENCODER_DIR, astra_planner
from models.hub import checkpoint_digest
from models.navigation import se2
from pipelines.train_local import LocalTrainConfig, cached_voxel_tokens, train_local
from schemas.local_dataset import (
    FRAMES,
    FRAMES_DIR,
    LOCAL_GEOMETRY,
    VOXELS_DIR,
    WINDOWS,
    WINDOWS_DIR,
    LocalDatasetManifest,
    voxel_shape,
)
from schemas.robot import DEFAULT_ROBOT, camera_mount
from schemas.topics import CAMERAS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The stored pictures' matrix (80 x 60, a 120 degree horizontal field of view), as the training set has it.
FOCAL, CX, CY = 23.094011, 39.75, 29.75
# Small enough for tens of milliseconds a step on one thread: 48 x 32 pictures, 32 x 32 cells of 0.2 m.
TINY = Encoder4DConfig(
    image_height=32,
    image_width=48,
    image_channels=16,
    feature_channels=8,
    depth_bins=16,
    lift_bins=3,
    grid=32,
    resolution=0.2,
    bev_channels=16,
    temporal_channels=16,
    render_samples=16,
    rays=32,
    token_grid=4,
)


def matrix(width: int, height: int) -> np.ndarray:
    """A 120 degree horizontal field of view at width x height, square pixels, centred."""
    focal = width / 2 / math.tan(math.radians(DEFAULT_ROBOT.camera_hfov_deg) / 2)
    return np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]], np.float32)


def scene_batch(size: int, config: Encoder4DConfig = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    """Windows of a robot driving through a world of random boxes on a flat floor, its three cameras ray-cast as the
    depth sensor and the pictures would see them: box colours, a chequered floor, nothing (invalid depth, white)
    beyond 8 m. Frame n = past - 1 is the world's origin; the others lie on a line, speed and turn random. Poses are
    true and odometry alike; the occupancy (boxes' footprints at cell centres) is static, so now and 1 s ahead agree.
    """
    rng = np.random.default_rng(seed)
    frames, cams = config.past + config.future, len(CAMERAS)
    h, w = config.image_height, config.image_width
    k = matrix(w, h)
    v, u = np.mgrid[0:h, 0:w]
    optical = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones((h, w))], -1)  # (h, w, 3)
    mounts = [camera_mount(DEFAULT_ROBOT, camera) for camera in CAMERAS]
    offsets = (np.arange(config.grid) + 0.5) * config.resolution - config.half_extent_m
    cell_y, cell_x = np.meshgrid(offsets, offsets, indexing="ij")
    out = {name: [] for name in ("rgb", "depth", "depth_valid", "poses", "true_occupancy")}
    for _ in range(size):
        boxes = []
        while len(boxes) < 5:
            centre, half = rng.uniform(-2.6, 2.6, 2), rng.uniform(0.15, 0.4, 2)
            if np.all(np.abs(centre) < half + 0.5) or (abs(centre[1]) < half[1] + 0.45):
                continue  # off the robot's path
            boxes.append((*(centre - half), 0.0, *(centre + half), rng.uniform(0.3, 1.6)))
        boxes = np.array(boxes)  # (M, 6): x0, y0, z0, x1, y1, z1
        colours = rng.uniform(0.1, 0.9, (len(boxes), 3))
        speed, turn = rng.uniform(0.0, 0.4), rng.uniform(-0.3, 0.3)
        tau = (np.arange(frames) - (config.past - 1)) * 0.5
        poses = np.stack([speed * tau, np.zeros(frames), turn * tau], 1)
        rgb = np.zeros((frames, cams, 3, h, w))
        depth = np.zeros((frames, cams, h, w))
        for f, (x, y, yaw) in enumerate(poses):
            turned = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
            for c, (translation, rotation) in enumerate(mounts):
                origin = turned @ np.asarray(translation) + [x, y, 0]
                direction = optical @ (turned @ rotation.as_matrix()).T  # (h, w, 3), optical z = 1
                safe = np.where(np.abs(direction) < 1e-9, 1e-9, direction)[..., None, :]
                near = np.minimum((boxes[:, :3] - origin) / safe, (boxes[:, 3:] - origin) / safe).max(-1)
                far = np.maximum((boxes[:, :3] - origin) / safe, (boxes[:, 3:] - origin) / safe).min(-1)
                hits = np.where((near <= far) & (near > 0), near, np.inf)  # (h, w, M)
                floor = np.where(direction[..., 2] < 0, -origin[2] / np.minimum(direction[..., 2], -1e-9), np.inf)
                t = np.minimum(hits.min(-1), floor)
                reach = np.where(np.isfinite(t), t, 0.0)[..., None]
                ground = np.floor((origin[:2] + reach * direction[..., :2]) / 0.5).sum(-1) % 2
                colour = np.where(
                    (hits.min(-1) < floor)[..., None],
                    colours[hits.argmin(-1)],
                    (0.35 + 0.3 * ground)[..., None],
                )
                seen = t < 8.0
                depth[f, c] = np.where(seen, t, 0.0)
                rgb[f, c] = np.where(seen[..., None], colour, 0.9).transpose(2, 0, 1)
        inside = (
            (cell_x[..., None] > boxes[:, 0])
            & (cell_x[..., None] < boxes[:, 3])
            & (cell_y[..., None] > boxes[:, 1])
            & (cell_y[..., None] < boxes[:, 4])
        ).any(-1)
        for name, value in (
            ("rgb", rgb),
            ("depth", depth),
            ("depth_valid", depth > 0),
            ("poses", poses),
            ("true_occupancy", np.stack([inside, inside])),
        ):
            out[name].append(value)
    batch = {name: torch.from_numpy(np.stack(values)) for name, values in out.items()}
    batch = {name: value if name == "depth_valid" else value.float() for name, value in batch.items()}
    batch["k"] = torch.from_numpy(k).expand(size, cams, 3, 3).clone()
    batch["odom_poses"] = batch["poses"].clone()
    return batch


def make_model(config: Encoder4DConfig = TINY, seed: int = 0) -> Encoder4D:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Encoder4D(config)


def train(model: Encoder4D, batch: dict[str, torch.Tensor], steps: int, lr: float = 3e-3) -> list[float]:
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    losses = []
    model.train()
    for _ in range(steps):
        loss, _ = model.loss(batch, generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


# --- geometry by hand ------------------------------------------------------------------------------------------------


def test_a_wall_ahead_lifts_to_its_distance_on_its_side_at_its_heights() -> None:
    """A wall 1.0125 m along the front camera's axis (the centre of depth bin 6 of 0.125 m from 0.2 m), all
    probability in that bin. Feature 0 is 1 on the picture's left half, feature 1 on its right: the left half must
    land left of the robot (y > 0, rows above the centre), the right half right, all of it in the column at
    x = 0.22 + 1.0125 m (column 44), and each feature pixel in the height bin of its ray's height there, as a loop
    over the pixels computes it (the top row at 1.69 m in bin 3, the rows below the floor dropped)."""
    config = Encoder4DConfig()
    h, w, bin_ = 15, 20, 6
    assert depth_centres(config)[bin_].item() == pytest.approx(1.0125)
    k = torch.tensor([[FOCAL, 0, CX], [0, FOCAL, CY], [0, 0, 1]]).expand(1, 3, 3, 3)
    features = torch.zeros(1, 3, 2, h, w)
    features[0, 0, 0, :, : w // 2] = 1  # front camera only
    features[0, 0, 1, :, w // 2 :] = 1
    probabilities = torch.zeros(1, 3, config.depth_bins, h, w)
    probabilities[:, :, bin_] = 1
    lifted = splat(features, probabilities, *lift_rays(k, config), config)  # (1, 2 * Z, G, G)
    heights = config.heights
    voxels = lifted.view(2, heights, 64, 64)

    expected = torch.zeros(2, heights, 64, 64)
    for i in range(h):
        for j in range(w):
            u, v, d = 4 * j + 1.5, 4 * i + 1.5, 1.0125
            x, y, z = 0.22 + d, -(u - CX) / FOCAL * d, 0.45 - (v - CY) / FOCAL * d  # optical right = -y, down = -z
            level = sum(z >= edge for edge in config.height_edges) - 1
            if 0 <= level < heights and abs(y) < 3.2:
                expected[0 if j < w // 2 else 1, level, math.floor(y / 0.1 + 32), math.floor(x / 0.1 + 32)] += 1
    torch.testing.assert_close(voxels, expected)
    assert voxels.sum() > 100
    assert voxels.sum(dim=(0, 1, 2))[44] == voxels.sum()  # all at x = 1.23 m
    left, right = voxels[0].sum(dim=(0, 2)), voxels[1].sum(dim=(0, 2))  # per row
    assert left[:32].sum() == 0 and left[32:].sum() > 0
    assert right[32:].sum() == 0 and right[:32].sum() > 0
    assert voxels[:, 3].sum() > 0 and voxels[:, 0].sum() > 0  # up to the top bin and down to the floor's

    # The rear-left camera (yaw 120 degrees): the wall lies across its axis, 0.22 + 1.0125 m from the robot's centre
    # along it (within a cell's half diagonal), the picture's left half to the axis' left.
    behind = splat(features.roll(1, dims=1), probabilities, *lift_rays(k, config), config).view(2, heights, 64, 64)
    axis = torch.tensor([math.cos(2 * math.pi / 3), math.sin(2 * math.pi / 3)])
    for feature, side in ((0, 1), (1, -1)):
        rows, columns = torch.nonzero(behind[feature].sum(dim=0), as_tuple=True)
        centres = torch.stack([columns, rows], dim=1) * 0.1 - 3.15  # (x, y) of the cells' centres
        assert len(centres) >= 8  # a cell or two per feature column
        assert ((centres @ axis - 1.2325).abs() < 0.071).all()
        assert (side * (axis[0] * centres[:, 1] - axis[1] * centres[:, 0]) > 0).all()


def test_warping_moves_a_cell_by_the_frames_pose() -> None:
    """A past frame's cell at (1.05, 0.05) m (row 32, column 42). With the frame 0.5 m ahead of the current one it
    lies 5 columns farther; with the frame turned 90 degrees left its x axis is the current y axis: at (-0.05, 1.05),
    row 42, column 31; both together: (0.45, 1.05)."""
    maps = torch.zeros(1, 1, 64, 64)
    maps[0, 0, 32, 42] = 1
    for pose, (row, column) in (
        ((0.5, 0.0, 0.0), (32, 47)),
        ((0.0, 0.0, math.pi / 2), (42, 31)),
        ((0.5, 0.0, math.pi / 2), (42, 36)),
        ((-0.3, 0.2, 0.0), (34, 39)),
    ):
        moved = warp(maps, torch.tensor([pose]), 3.2)[0, 0]
        assert moved[row, column].item() == pytest.approx(1, abs=1e-5), pose
        assert moved.sum().item() == pytest.approx(1, abs=1e-5), pose


def test_volume_rendering_of_a_slab_and_the_floor() -> None:
    """The field as the maps themselves (an identity head): a slab of dense cells at x in [1.0, 1.1) m, the rest
    empty; red about the slab (columns 41 to 43), blue elsewhere, green at the lowest level. The front camera's
    central ray (along x from x = 0.22 m at 0.45 m) renders the slab's depth, 0.78 m, within half a cell and a
    sample's spacing, and red; its last row's ray meets the floor at exactly 0.45 / ((59 - 29.75) / 23.09) m,
    green."""
    config = replace(Encoder4DConfig(), render_samples=96)
    levels = config.render_levels
    field = torch.full((1, 4 * levels, 64, 64), -30.0)  # density levels 0..L-1, then red, green, blue levels
    field[0, :levels, :, 42] = 600.0
    field[0, 3 * levels :] = 30.0  # blue
    field[0, levels : 2 * levels, :, 41:44] = 30.0  # red about the slab
    field[0, 3 * levels :, :, 41:44] = -30.0
    field[0, [levels, 2 * levels, 3 * levels]] = torch.tensor([-30.0, 30.0, -30.0])[:, None, None]  # green floor
    k = torch.tensor([[FOCAL, 0, CX], [0, FOCAL, CY], [0, 0, 1]])
    rays = pixel_rays(k, 60, 80)  # (60, 80, 3)
    rotations, translations = camera_mounts()
    directions = torch.stack([rays[30, 40], rays[59, 40]]) @ rotations[0].T
    origins = translations[0].expand(2, 3)
    depth, colour = render(field, lambda x: x, origins[None], directions[None], config)
    spacing = (3.2 - 0.22 - 0.2) / 96
    # Read trilinearly, the slab's edge spreads over half a cell before it: from x = 0.95 to 1.0 m.
    assert 0.95 - 0.22 - spacing < depth[0, 0].item() < 1.0 - 0.22 + spacing
    torch.testing.assert_close(colour[0, 0], torch.tensor([1.0, 0.0, 0.0]), atol=0.02, rtol=0)
    assert depth[0, 1].item() == pytest.approx(0.45 / ((59 - CY) / FOCAL), abs=1e-4)
    torch.testing.assert_close(colour[0, 1], torch.tensor([0.0, 1.0, 0.0]), atol=1e-4, rtol=0)


def test_occupancy_iou_by_hand() -> None:
    """`iou` pools cells; `seen_cells` marks where the front camera's wall points fall; `occupancy_iou` of a head
    that says "occupied" everywhere is the truth's share of the cells (and of the seen ones), and one that says
    "free" everywhere scores 0."""
    predicted = torch.zeros(2, 4, 4, dtype=torch.bool)
    truth = torch.zeros(2, 4, 4, dtype=torch.bool)
    predicted[0, :2, :2] = True  # 4 cells
    truth[0, 1:3, :2] = True  # 4 cells, 2 shared
    truth[1, 0, 0] = True  # 1 more, missed
    assert iou(predicted, truth) == pytest.approx(2 / 7)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, 1] = True  # row 1: both say occupied at columns 0 and 1
    assert iou(predicted, truth, mask) == 1.0
    assert math.isnan(iou(predicted & False, truth & False))
    # A person one cell to the right 1 s later: a 1 s map that moved them scores 1 on the two changed cells, the
    # map of now held still 0.
    occupancy, future = torch.zeros(1, 2, 4, 4, dtype=torch.bool), torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    occupancy[0, :, 0, 0] = True  # a wall that stays, outside the changed cells
    occupancy[0, 0, 2, 1], occupancy[0, 1, 2, 2] = True, True
    future[0, 0, 2, 1], future[0, 1, 2, 2] = True, True
    assert moving_ious(future, occupancy) == {"iou_1s_moving": 1.0, "iou_1s_moving_held_still": 0.0}
    future[0, 1] = future[0, 0]  # held still
    assert moving_ious(future, occupancy)["iou_1s_moving"] == 0.0

    depth = torch.zeros(1, 1, 3, 60, 80)
    depth[0, 0, 0] = 1.0125
    valid = depth > 0
    k = torch.tensor([[FOCAL, 0, CX], [0, FOCAL, CY], [0, 0, 1]]).expand(1, 3, 3, 3)
    seen = seen_cells(depth, valid, k, torch.zeros(1, 1, 3), Encoder4DConfig())[0]
    rows, columns = torch.nonzero(seen, as_tuple=True)
    assert set(columns.tolist()) == {44} and rows.min() < 20 and rows.max() > 44  # the wall: a 120 degree view
    moved = seen_cells(depth, valid, k, torch.tensor([[[0.5, 0.0, 0.0]]]), Encoder4DConfig())[0]
    assert torch.equal(moved[:, 49], seen[:, 44])  # a frame 0.5 m ahead saw it 5 columns farther

    batch = scene_batch(2, seed=3)
    model = make_model()
    with torch.no_grad():
        model.occupancy_head.weight.zero_()
        model.occupancy_head.bias.fill_(10.0)
    seen = seen_cells(batch["depth"][:, :4], batch["depth_valid"][:, :4], batch["k"], batch["odom_poses"][:, :4], TINY)
    truth = batch["true_occupancy"][:, 0] > 0.5
    scores = model.occupancy_iou(batch)
    assert scores["iou_now"] == pytest.approx(truth.float().mean().item())
    assert scores["iou_1s"] == pytest.approx(truth.float().mean().item())
    assert scores["iou_now_seen"] == pytest.approx((truth & seen).sum().item() / seen.sum().item())
    assert 0 < scores["iou_now_seen"] < 1 and seen.float().mean() < 0.9
    with torch.no_grad():
        model.occupancy_head.bias.fill_(-10.0)
    assert set(model.occupancy_iou(batch).values()) == {0.0}


# --- what the encoder reads ------------------------------------------------------------------------------------------


def test_encode_reads_the_past_frames_and_their_odometry_alone() -> None:
    """The outputs' shapes; the future frames, the true poses and the occupancy are not read (they are training
    targets), while a past frame's picture and its odometry pose are."""
    model = make_model()
    batch = scene_batch(2, seed=1)
    with torch.no_grad():
        out = model.encode(batch)
        assert out["bev"].shape == (2, 16, 32, 32)
        assert out["future"].shape == (2, 4, 16, 32, 32)
        assert out["tokens"].shape == (2, 16, 16)
        assert out["occupancy"].shape == (2, 2, 32, 32)
        assert ((out["occupancy"] >= 0) & (out["occupancy"] <= 1)).all()
        changed = dict(batch)
        for name in ("rgb", "depth"):
            changed[name] = batch[name].clone()
            changed[name][:, 4:] = torch.rand(changed[name][:, 4:].shape)
        changed["poses"] = torch.randn(batch["poses"].shape)
        changed["true_occupancy"] = 1 - batch["true_occupancy"]
        again = model.encode(changed)
        for name in out:
            assert torch.equal(again[name], out[name]), name
        for name, frame in (("rgb", 0), ("odom_poses", 1)):
            changed = dict(batch, **{name: batch[name].clone()})
            changed[name][:, frame] += 0.3
            assert not torch.allclose(model.encode(changed)["bev"], out["bev"], atol=1e-4), name


# --- training --------------------------------------------------------------------------------------------------------


def test_the_encoder_learns_a_small_batch() -> None:
    """Four ray-cast windows, 150 Adam steps: the loss falls, the depth render comes within a few centimetres, the
    colour render improves, and the occupancy now and 1 s ahead is learnt (IoU on all cells and on the seen ones)."""
    batch = scene_batch(4, seed=2)
    model = make_model()
    _, before = model.loss(batch, torch.Generator().manual_seed(1))
    losses = train(model, batch, 150)
    _, after = model.loss(batch, torch.Generator().manual_seed(1))
    assert set(after) == {"depth_bins", "depth_l1", "colour_l1", "occupancy_bce"}  # no feature term by default
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10]), (losses[:3], losses[-3:])
    assert after["depth_l1"] < 0.05 and after["colour_l1"] < 0.85 * before["colour_l1"], (before, after)
    assert after["depth_bins"] < 0.3 * before["depth_bins"] and after["occupancy_bce"] < 0.05, (before, after)
    scores = model.occupancy_iou(batch)
    assert min(scores.values()) > 0.9, scores


def test_without_the_occupancy_weight_the_occupancy_head_learns_nothing() -> None:
    """occupancy_weight = 0: the term is reported, but no gradient reaches the occupancy head, and the truth changes
    no gradient anywhere; the total is the other terms' weighted sum."""
    config = replace(TINY, occupancy_weight=0.0)
    batch = scene_batch(2, seed=4)
    grads = []
    for truth in (batch["true_occupancy"], 1 - batch["true_occupancy"]):
        model = make_model(config)
        total, parts = model.loss(dict(batch, true_occupancy=truth), torch.Generator().manual_seed(0))
        total.backward()
        assert parts["occupancy_bce"] > 0
        assert all(p.grad is None for p in model.occupancy_head.parameters())
        assert model.image.net[0].weight.grad.abs().sum() > 0
        others = (
            config.depth_bin_weight * parts["depth_bins"]
            + config.depth_weight * parts["depth_l1"]
            + config.colour_weight * parts["colour_l1"]
        )
        assert total.item() == pytest.approx(others, rel=1e-5)
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


# --- config and checkpoints ------------------------------------------------------------------------------------------


def test_config_validation_and_size() -> None:
    assert Encoder4DConfig(height_edges=[0.0, 0.5, 1.0]).height_edges == (0.0, 0.5, 1.0)  # as config.json gives it
    for bad in (
        {"height_edges": (0.0, 0.0, 1.0)},
        {"ahead_frame": 5},
        {"image_width": 82},
        {"grid": 60, "token_grid": 8},
        {"render_levels": 1},
        {"depth_min": 0.0},
    ):
        with pytest.raises(ValueError):
            Encoder4DConfig(**bad)
    assert sum(p.numel() for p in Encoder4D().parameters()) < 200_000


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    """Every field of a non-default config comes back, and so do the outputs and the loss of the same rays."""
    config = replace(
        TINY, height_edges=(-0.1, 0.2, 1.0, 2.0), lift_bins=2, token_grid=8, occupancy_weight=0.5, feature_weight=0.5
    )
    model = make_model(config)
    train(model, scene_batch(2, config, seed=5), 3)  # off the initialisation
    model.save_pretrained(tmp_path)
    loaded = Encoder4D.from_pretrained(tmp_path)
    assert loaded.config == config
    assert "Astra-Local 4D spatio-temporal encoder" in (tmp_path / "README.md").read_text()
    batch = scene_batch(2, config, seed=6)
    with torch.no_grad():
        for name, value in model.encode(batch).items():
            assert torch.equal(loaded.encode(batch)[name], value), name
        total, parts = model.loss(batch, torch.Generator().manual_seed(7))
        assert loaded.loss(batch, torch.Generator().manual_seed(7)) == (total, parts)


# --- the dataset reader ----------------------------------------------------------------------------------------------


def _write_episode(
    folder: Path, site: str, seed: int, dynamic: bool, episode: str, count: int, windows: list[int]
) -> dict:
    """`count` frames of one tour: frame i's pictures a flat colour (red 20 i, green 80 per camera), its depth
    0.5 + 0.25 i m but one invalid pixel, true poses on a curve and the filter's a little off; windows at frames
    `windows`, each one's true occupancy holding its frame's number."""
    g = LOCAL_GEOMETRY
    tour = {"site": site, "kind": "office", "world_seed": seed, "dynamic": dynamic, "episode_id": episode}
    frames = []
    for i in range(count):
        jpegs, depths = [], []
        for c in range(3):
            out = io.BytesIO()
            Image.new("RGB", (g.image_width, g.image_height), (20 * i, 80 * c, 40)).save(out, "JPEG", quality=95)
            jpegs.append(out.getvalue())
            depth = np.full((g.image_height, g.image_width), 0.5 + 0.25 * i, "<f2")
            depth[0, 0] = np.nan
            depths.append(depth.tobytes())
        true = (0.3 * i, 0.05 * i**2, 0.1 * i)
        frames.append(
            tour
            | {
                "t_ns": 100_000_000 + 500_000_000 * i,
                "cameras": list(CAMERAS),
                "jpeg": jpegs,
                "depth": depths,
                "k": [[FOCAL, 0, CX, 0, FOCAL, CY, 0, 0, 1]] * 3,
                "odom_x": 1.05 * true[0],
                "odom_y": 0.9 * true[1],
                "odom_yaw": 1.1 * true[2],
                "odom_v": 0.6,
                "odom_w": 0.2,
                "true_x": true[0],
                "true_y": true[1],
                "true_yaw": true[2],
                "imu_t_ns": [],
                "imu": [],
                "wheels_t_ns": [],
                "wheels": [],
            }
        )
    rows = []
    for n in windows:
        occupancy = np.zeros((2, g.grid, g.grid), np.uint8)
        occupancy[0, 0, 0], occupancy[1, 0, 0] = n, n + 100
        rows.append(
            tour
            | {
                "t_ns": frames[n]["t_ns"],
                "frame_t_ns": [f["t_ns"] for f in frames[max(0, n - 3) : n + 1]],
                "occupancy": bytes(g.frames * g.grid * g.grid),
                "velocity": [0.0] * 2 * g.frames,
                "motion": [0.0] * 3 * g.frames,
                "goal_x": 3.0,
                "goal_y": 0.0,
                "trajectory": [0.0] * 3 * g.waypoints,
                "true_occupancy": occupancy.tobytes(),
                "esdf": bytes(2 * 2 * g.grid * g.grid),
                "expert_v": 0.5,
            }
        )
    for directory, schema, table in ((FRAMES_DIR, FRAMES, frames), (WINDOWS_DIR, WINDOWS, rows)):
        (folder / directory).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(table, schema=schema), folder / directory / f"{episode}.parquet")
    return {"kind": "office", "world_seed": seed, "episodes": [episode], "dynamic_episodes": [episode] * dynamic}


@pytest.fixture
def small_set(tmp_path: Path) -> Path:
    """Two tours of two sites: 12 frames with windows at frames 2, 3, 5, 7 and 8 (of which 2 lacks three frames
    before it and 8 four after it), and 9 frames with people walking, one window at frame 4."""
    folder = tmp_path / "set"
    sites = {
        "office-1": _write_episode(folder, "office-1", 1, False, "aaaa", 12, [2, 3, 5, 7, 8]),
        "office-2": _write_episode(folder, "office-2", 2, True, "bbbb", 9, [4]),
    }
    LocalDatasetManifest(
        lake="synthetic", lake_version=1, episodes=["aaaa", "bbbb"], sites=sites, geometry=asdict(LOCAL_GEOMETRY)
    ).write(folder)
    return folder


def test_encoder_sequences_pair_each_window_with_its_frames(small_set: Path) -> None:
    data = EncoderSequences(small_set)
    assert len(data) == 4
    assert data.index.select("episode_id", "t_ns").rows() == [
        ("aaaa", 100_000_000 + 500_000_000 * n) for n in (3, 5, 7)
    ] + [("bbbb", 2_100_000_000)]
    batch = data.batch(np.array([1, 3]))
    shapes = {
        "rgb": (2, 8, 3, 3, 60, 80),
        "depth": (2, 8, 3, 60, 80),
        "depth_valid": (2, 8, 3, 60, 80),
        "k": (2, 3, 3, 3),
        "poses": (2, 8, 3),
        "odom_poses": (2, 8, 3),
        "true_occupancy": (2, 2, 64, 64),
    }
    assert {name: tuple(value.shape) for name, value in batch.items()} == shapes
    assert batch["depth_valid"].dtype == torch.bool and batch["rgb"].dtype == torch.float32
    # Window at frame 5: frames 2 .. 9, each camera's colour and depth its own.
    red = batch["rgb"][0, :, :, 0].mean(dim=(-1, -2)) * 255
    np.testing.assert_allclose(red, np.repeat(20 * np.arange(2, 10)[:, None], 3, 1), atol=3)
    green = batch["rgb"][0, :, :, 1].mean(dim=(-1, -2)) * 255
    np.testing.assert_allclose(green, np.repeat([[0, 80, 160]], 8, 0), atol=3)
    np.testing.assert_allclose(batch["depth"][0, :, :, 5, 5], np.repeat(0.5 + 0.25 * np.arange(2, 10)[:, None], 3, 1))
    assert not batch["depth_valid"][:, :, :, 0, 0].any() and (batch["depth"][:, :, :, 0, 0] == 0).all()
    assert batch["depth_valid"][:, :, :, 1:, 1:].all()
    assert batch["true_occupancy"][0, :, 0, 0].tolist() == [5, 105] and batch["true_occupancy"][1, 0, 0, 0] == 4
    torch.testing.assert_close(batch["k"][0, 2], torch.tensor([[FOCAL, 0, CX], [0, FOCAL, CY], [0, 0, 1]]))
    # Poses in frame 5's ego, true and as the filter saw them; frame n itself at the origin.
    for name, scale in (("poses", (1, 1, 1)), ("odom_poses", (1.05, 0.9, 1.1))):
        pose = [tuple(s * v for s, v in zip(scale, (0.3 * i, 0.05 * i**2, 0.1 * i), strict=True)) for i in range(12)]
        expected = [se2.compose(se2.inverse(pose[5]), pose[i]) for i in range(2, 10)]
        np.testing.assert_allclose(batch[name][0].numpy(), expected, atol=1e-5)
        assert batch[name][0, 3].abs().max() < 1e-6

    assert len(EncoderSequences(small_set, sites=["office-2"])) == 1
    dynamic = EncoderSequences(small_set, where=pl.col("dynamic"))
    assert dynamic.index["episode_id"].to_list() == ["bbbb"]
    assert len(EncoderSequences(small_set, past=2, future=2)) == 6  # frames 2 and 8 fit too


def test_decoded_frames_are_cached_beside_the_dataset_and_reused(small_set: Path) -> None:
    """The first reader writes each tour's decoded pictures and depth; the next reads them and not the JPEGs: a cache
    changed behind its back shows through."""
    EncoderSequences(small_set)
    cached = small_set / ENCODER_CACHE / "aaaa.npz"
    assert sorted(p.name for p in (small_set / ENCODER_CACHE).iterdir()) == ["aaaa.npz", "bbbb.npz"]
    with np.load(cached) as stored:
        rgb, depth = stored["rgb"], stored["depth"]
    assert rgb.dtype == np.uint8 and rgb.shape == (12, 3, 3, 60, 80)
    assert depth.dtype == np.float16 and depth.shape == (12, 3, 60, 80)
    with cached.open("wb") as out:
        np.savez(out, rgb=np.full_like(rgb, 51), depth=depth)
    again = EncoderSequences(small_set).batch(np.array([0]))
    assert (again["rgb"] == 0.2).all()


def test_a_voxel_planner_learns_on_the_frozen_encoders_cached_tokens_and_carries_the_encoder(
    small_set: Path, tmp_path: Path
) -> None:
    """`astra train local`'s planner that attends to the 4D encoder's tokens: the tokens of every window with the
    encoder's past frames are computed once per encoder checkpoint and read beside the windows, and the trained
    planner's folder carries the encoder that serving lifts the cameras with."""
    encoder = Encoder4D(Encoder4DConfig()).eval()
    encoder.save_pretrained(tmp_path / "encoder")
    config = LocalTrainConfig(steps=2, batch_size=2)
    train_local(small_set, tmp_path / "out", ["fm_esdf_voxels"], config, (2,), False, (), encoder4d=False,
                voxel_encoder=tmp_path / "encoder")  # fmt: skip
    [tokens] = (small_set / VOXELS_DIR).iterdir()
    assert voxel_shape(tokens) == (64, 16)
    windows = LocalWindows(small_set, voxels=tokens)
    assert windows.index.select("episode_id", "t_ns").rows() == [
        ("aaaa", 100_000_000 + 500_000_000 * n) for n in (3, 5, 7, 8)
    ] + [("bbbb", 2_100_000_000)]
    frames = EncoderSequences(small_set, future=0)
    with torch.inference_mode():
        expected = encoder.encode(frames.batch(np.arange(len(frames))))["tokens"]
    torch.testing.assert_close(windows.batch(np.arange(5))["voxels"], expected, atol=2e-3, rtol=2e-3)
    modified = tokens.stat().st_mtime_ns
    assert cached_voxel_tokens(small_set, tmp_path / "encoder", progress=False) == tokens
    assert tokens.stat().st_mtime_ns == modified
    planner = astra_planner(tmp_path / "out" / "fm_esdf_voxels")
    assert planner.reads_cameras and planner.model.config.voxel_tokens == 64
    for name, value in encoder.state_dict().items():
        torch.testing.assert_close(planner.encoder.state_dict()[name], value)


def test_a_voxel_planner_trained_with_the_encoder_reads_that_encoders_tokens(small_set: Path, tmp_path: Path) -> None:
    """One `astra train local` run of the 4D encoder and a voxel planner reproduces both: the encoder trains first
    and the planner learns on, and carries, the encoder the run wrote (not the committed one)."""
    config = LocalTrainConfig(steps=1, batch_size=2)
    out = tmp_path / "out"
    train_local(small_set, out, ["fm_esdf_voxels"], config, (2,), False, (), encoder4d_config=config)
    trained = Encoder4D.from_pretrained(out / ENCODER_DIR)
    [tokens] = (small_set / VOXELS_DIR).iterdir()
    assert tokens.stem == checkpoint_digest(out / ENCODER_DIR)
    planner = astra_planner(out / "fm_esdf_voxels")
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(planner.encoder.state_dict()[name], value)
