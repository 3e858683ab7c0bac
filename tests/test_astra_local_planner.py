"""Astra-Local's learned planner: its losses against hand-computed cases, its attention masks, its samplers against
oracles, every planner kind overfitting a small synthetic batch, the ablation switches and the checkpoint round trip."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from models.astra_local.attention import causal_attention_mask, independent_prefix, trajectory_attention_mask
from models.astra_local.guidance import push_off_obstacles
from models.astra_local.losses import info_nce_loss, masked_esdf_loss, polyline_distance
from models.astra_local.planner import KINDS, LocalPlannerModel, PlannerConfig
from schemas.local_dataset import LocalGeometry

SMALL = LocalGeometry(grid=32)  # 2 x 2 patches a frame: training steps of a few milliseconds
TINY = PlannerConfig(d_model=32, layers=2, stem_channels=(8, 16), latent_dim=8, geometry=SMALL)
CONDITIONING = ("occupancy", "velocity", "motion", "goal")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synthetic_batch(size: int, geometry: LocalGeometry = SMALL, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random occupancy (10% occupied, 20% unknown); a robot that came along an arc at a random speed and yaw rate,
    and an expert that goes on at that speed along the circular arc to a random goal, tangent to its heading: the
    trajectory's speed is in the velocities and motions, its curvature in the goal alone. The ESDF's walls are
    random cells, none within 0.5 m of the expert's path, as an expert keeps clear of them."""
    rng = np.random.default_rng(seed)
    frames, cells, waypoints = geometry.frames, geometry.grid, geometry.waypoints
    occupancy = np.where(rng.random((size, frames, cells, cells)) < 0.1, 1.0, 0.0)
    occupancy[rng.random(occupancy.shape) < 0.2] = 0.5
    bearing, distance = rng.uniform(-1.0, 1.0, size), rng.uniform(1.5, 3.0, size)
    goal = np.stack([distance * np.cos(bearing), distance * np.sin(bearing)], axis=1)
    speed, yaw_rate = rng.uniform(0.4, 1.0, (size, 1)), rng.uniform(-0.5, 0.5, (size, 1))

    def arc(curvature: np.ndarray, length: np.ndarray) -> np.ndarray:  # (x, y, yaw) `length` metres along it
        turn = curvature * length
        return np.stack([np.sin(turn) / curvature, (1 - np.cos(turn)) / curvature, turn], axis=-1)

    trajectory = arc(
        2 * goal[:, 1:] / (goal**2).sum(1, keepdims=True),
        speed * geometry.waypoint_period_s * np.arange(1, waypoints + 1),
    )
    motion = arc(yaw_rate / speed, speed * geometry.frame_period_s).repeat(frames, axis=1)
    motion[:, 0] = 0
    velocity = np.stack(np.broadcast_arrays(speed, yaw_rate), axis=-1).repeat(frames, axis=1)
    centres = (np.arange(cells) + 0.5) * geometry.resolution - geometry.half_extent_m
    cell_xy = torch.tensor(np.stack(np.meshgrid(centres, centres, indexing="xy"), axis=-1).reshape(1, -1, 2))
    clear = polyline_distance(cell_xy.expand(size, -1, -1), torch.tensor(trajectory[..., :2])).numpy() < 0.5
    walls = (rng.random((size, 2, cells, cells)) < 0.02) & ~clear.reshape(size, 1, cells, cells)
    esdf = np.stack([[distance_transform_edt(~grid) for grid in sample] for sample in walls]) * geometry.resolution
    fields = {"occupancy": occupancy, "velocity": velocity, "motion": motion, "goal": goal}
    fields |= {"trajectory": trajectory, "esdf": esdf}
    return {name: torch.tensor(value, dtype=torch.float32) for name, value in fields.items()}


def conditioning(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: batch[name] for name in CONDITIONING}


def make_model(config: PlannerConfig, seed: int = 0) -> LocalPlannerModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LocalPlannerModel(config)


# --- losses -----------------------------------------------------------------------------------------------------


def test_masked_esdf_loss_hand_computed() -> None:
    """Three waypoints at 0.25, 0.5, 0.75 s: the first two read the ESDF now, a wall along y = -0.6 (distance
    y + 0.6); the third reads it 1 s ahead, something across x = 1 (distance 1 - x). Safe distance 0.35 m."""
    geometry = LocalGeometry(waypoints=3)
    centres = (np.arange(geometry.grid) + 0.5) * geometry.resolution - geometry.half_extent_m
    now = np.maximum(0, centres[:, None] + 0.6).repeat(geometry.grid, axis=1)  # rows are y
    ahead = np.maximum(0, 1.0 - centres[None, :]).repeat(geometry.grid, axis=0)  # columns are x
    esdf = torch.tensor(np.stack([now, ahead])[None], dtype=torch.float32)
    expert = torch.tensor([[[0.3, -0.3], [0.6, -0.4], [0.9, -0.4]]])
    waypoints = torch.tensor(
        [
            [
                [0.3, -0.45],  # 0.14 m from the expert's path: its 0.15 m clearance (penalty 0.2) is masked
                [-0.5, -0.4],  # 0.64 m off the path, 0.2 m from the wall now: penalty 0.15
                [0.8, 0.5],  # 0.9 m off the path, 0.2 m from what is ahead in 1 s: penalty 0.15
            ]
        ],
        requires_grad=True,
    )
    np.testing.assert_allclose(polyline_distance(waypoints.detach(), expert)[0], [0.1423, 0.6403, 0.9], atol=1e-4)
    loss = masked_esdf_loss(waypoints, esdf, expert, geometry, safe_distance=0.35, band=0.3)
    assert loss.item() == pytest.approx((0 + 0.15 + 0.15) / 3, abs=1e-5)
    loss.backward()
    # Descent moves the second waypoint up, off the wall, the third back, off what comes; the masked one stays.
    np.testing.assert_allclose(waypoints.grad[0], [[0, 0], [0, -1 / 3], [1 / 3, 0]], atol=1e-4)


def test_info_nce_hand_computed() -> None:
    """Cosines [[1, 1/√2], [0, 1/√2]]; at temperature 0.5 the logits are [[2, √2], [0, √2]]."""
    states = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    actions = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # lengths differ: only directions count
    root2 = math.sqrt(2)
    rows = (math.log(1 + math.exp(root2 - 2)) + math.log(1 + math.exp(-root2))) / 2  # pick the action of a state
    columns = (math.log(1 + math.exp(-2)) + math.log(2)) / 2  # pick the state of an action
    assert (rows + columns) / 2 == pytest.approx(0.370061, abs=1e-6)
    assert info_nce_loss(states, actions, temperature=0.5).item() == pytest.approx((rows + columns) / 2, abs=1e-6)


# --- attention ------------------------------------------------------------------------------------------------------


def test_trajectory_attention_mask() -> None:
    expected = [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1],
    ]
    mask = trajectory_attention_mask(torch.tensor([0, 0, 1, 1, 1, 2]))
    assert mask.tolist() == [[bool(x) for x in row] for row in expected]
    with pytest.raises(ValueError):
        trajectory_attention_mask(torch.tensor([0, 1, 0]))


def test_causal_attention_mask() -> None:
    expected = [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    assert causal_attention_mask(4).tolist() == [[bool(x) for x in row] for row in expected]


def test_independent_prefix() -> None:
    # Tokens 4, 5 vary: segment 1's tokens 2, 3 see them, segment 0's do not.
    assert independent_prefix(trajectory_attention_mask(torch.tensor([0, 0, 1, 1, 1, 1])), 4) == 2
    assert independent_prefix(trajectory_attention_mask(torch.tensor([0, 0, 1, 1, 1, 2])), 5) == 5
    assert independent_prefix(causal_attention_mask(6), 4) == 4


@pytest.mark.parametrize("attention", ["trajectory", "causal"])
def test_model_masks_follow_the_switch(attention: str) -> None:
    """The default geometry: 3 segments of 16 patches, state and motion, then 16 patches, state, goal and 3 queries."""
    model = make_model(PlannerConfig(attention=attention))
    assert torch.bincount(model.segment_ids).tolist() == [18, 18, 18, 21]
    segment_mask = trajectory_attention_mask(model.segment_ids)
    expected = segment_mask if attention == "trajectory" else causal_attention_mask(len(model.segment_ids))
    assert torch.equal(model.attention_mask, expected)
    assert not torch.equal(segment_mask, causal_attention_mask(len(model.segment_ids)))


@pytest.mark.parametrize("action_queries", [True, False])
def test_causal_attention_hides_later_action_tokens(action_queries: bool) -> None:
    """The first action token (the x query, or waypoint 1) sees the last (the yaw query, or waypoint K) under
    trajectory attention, not under the causal mask."""
    batch = synthetic_batch(2)
    values, time = torch.randn(2, SMALL.waypoints, 3), torch.rand(2)
    changed = values.clone()
    if action_queries:
        changed[..., 2] += 1.0
    else:
        changed[:, -1] += 1.0
    for attention in ("trajectory", "causal"):
        model = make_model(replace(TINY, attention=attention, action_queries=action_queries))
        assert model.action_tokens == (3 if action_queries else SMALL.waypoints)
        assert len(model.segment_ids) == model.encoded_tokens + model.action_tokens
        context = model.encode(batch)
        first, first_changed = (
            (out[..., 0] if action_queries else out[:, 0])
            for out in (model(context, values, time), model(context, changed, time))
        )
        assert torch.allclose(first, first_changed) == (attention == "causal")


@pytest.mark.parametrize("attention", ["trajectory", "causal"])
def test_every_field_reaches_the_plan(attention: str) -> None:
    """The oldest frame's occupancy and velocity, the motion out of it, and the goal all move the plan; motion row 0
    (the motion into the oldest frame) is not read."""
    model = make_model(replace(TINY, kind="bc", attention=attention))
    batch = conditioning(synthetic_batch(2))
    plan = model.sample(batch, 1)
    for name, index in [("occupancy", (slice(None), 0)), ("velocity", (slice(None), 0)), ("motion", (slice(None), 1))]:
        changed = dict(batch, **{name: batch[name].clone()})
        changed[name][index] = 1 - changed[name][index]
        assert not torch.allclose(model.sample(changed, 1), plan), name
    assert not torch.allclose(model.sample(dict(batch, goal=batch["goal"] + 0.5), 1), plan)
    unused = dict(batch, motion=batch["motion"].clone())
    unused["motion"][:, 0] = 1.0
    assert torch.equal(model.sample(unused, 1), plan)


def test_a_planner_without_history_reads_no_velocity_or_motion() -> None:
    model = make_model(replace(TINY, kind="bc", history=False))
    batch = conditioning(synthetic_batch(2))
    plan = model.sample(batch, 1)
    moved = dict(batch, velocity=torch.rand_like(batch["velocity"]), motion=torch.rand_like(batch["motion"]))
    assert torch.equal(model.sample(moved, 1), plan)
    assert not torch.allclose(model.sample(dict(batch, goal=batch["goal"] + 0.5), 1), plan)


@pytest.mark.parametrize("kind", ["fm", "vae"])
@pytest.mark.parametrize("attention", ["trajectory", "causal"])
def test_cached_prefix_gives_the_full_pass(kind: str, attention: str) -> None:
    model = make_model(replace(TINY, kind=kind, attention=attention))
    batch = synthetic_batch(3)
    context = model.encode(batch)
    values, time, latent = torch.randn(3, SMALL.waypoints, 3), torch.rand(3), torch.randn(3, TINY.latent_dim)
    inputs = (values, time, None) if kind == "fm" else (None, None, latent)
    for prefix in (None, model.past_tokens):  # sampling's cache, and training's: the past frames' segments
        past = model.prefix_key_values(context, prefix)
        cached = model(context, *inputs, past=past)
        torch.testing.assert_close(cached, model(context, *inputs), atol=1e-5, rtol=1e-5)
    past = model.prefix_key_values(context, model.past_tokens)
    torch.testing.assert_close(model.summarise(context, past), model.summarise(context), atol=1e-5, rtol=1e-5)


# --- samplers and training --------------------------------------------------------------------------------------


def test_flow_sampler_follows_the_straight_path() -> None:
    """With an oracle that knows x1, each Euler step lands on the straight line from the start noise to x1 at the
    next time, and the last on x1."""
    model = make_model(TINY)
    batch = synthetic_batch(2)
    target = (batch["trajectory"] / model.trajectory_scale).repeat_interleave(3, 0)
    seen = []

    def oracle(context, values, time, latent=None, past=None):
        seen.append((values.clone(), time.clone()))
        return target

    model.forward = oracle
    samples = model.sample(conditioning(batch), 3)
    torch.testing.assert_close(samples, batch["trajectory"][:, None].expand_as(samples))
    start = seen[0][0]
    assert [round(time[0].item(), 6) for _, time in seen] == [0.0, 0.2, 0.4, 0.6, 0.8]
    for values, time in seen:
        torch.testing.assert_close(values, (1 - time[0]) * start + time[0] * target)


def test_diffusion_sampler_recovers_the_target_from_exact_noise() -> None:
    """DDIM given the true noise at every level it visits keeps to the one noise it started from, level after level,
    and gives back the clean trajectory."""
    model = make_model(replace(TINY, kind="dp"))
    batch = synthetic_batch(2)
    target = (batch["trajectory"] / model.trajectory_scale).repeat_interleave(3, 0)
    levels, noises = [], []

    def oracle(context, values, time, latent=None, past=None):
        step = torch.round(time * model.config.diffusion_steps - 1).long()
        levels.append(step[0].item())
        signal = model.alphas_cumprod[step][:, None, None]
        noises.append((values - signal.sqrt() * target) / (1 - signal).sqrt())
        return noises[-1]

    model.forward = oracle
    samples = model.sample(conditioning(batch), 3)
    assert levels == [19, 17, 15, 13, 11, 8, 6, 4, 2, 0]
    for noise in noises[1:]:
        torch.testing.assert_close(noise, noises[0], atol=1e-3, rtol=0)
    torch.testing.assert_close(samples, batch["trajectory"][:, None].expand_as(samples), atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["fm", "dp"])
def test_training_noises_as_the_sampler_assumes(kind: str) -> None:
    """What training shows the network at time t is signal(t) x1 + spread(t) noise, the relation the sampler inverts
    (fm: t and 1 - t; dp: the schedule's sqrt(alpha_bar) and sqrt(1 - alpha_bar)): the noise it implies is N(0, 1)."""
    model = make_model(replace(TINY, kind=kind, esdf_weight=0.0, contrastive_weight=0.0))
    batch = synthetic_batch(64)
    seen = {}

    def spy(context, values, time, latent=None, past=None):
        seen.update(values=values, time=time[:, None, None])
        return values

    model.forward = spy
    model.loss(batch, torch.Generator().manual_seed(0))
    if kind == "fm":
        signal, spread = seen["time"], 1 - seen["time"]
    else:
        alpha_bar = model.alphas_cumprod[torch.round(seen["time"] * model.config.diffusion_steps - 1).long()]
        signal, spread = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    noise = (seen["values"] - signal * batch["trajectory"] / model.trajectory_scale) / spread
    rms = noise[spread.flatten() > 0.05].square().mean(dim=(1, 2)).sqrt()  # of 24 numbers: 1 +- 0.15
    assert ((rms > 0.5) & (rms < 1.6)).all(), rms


def mean_terms(model: LocalPlannerModel, batch: dict[str, torch.Tensor], draws: int = 8) -> dict[str, float]:
    """The loss terms averaged over a few fixed draws of noise and time: one draw of 8 is too noisy to compare."""
    terms = [model.loss(batch, torch.Generator().manual_seed(seed))[1] for seed in range(draws)]
    return {name: float(np.mean([t[name] for t in terms])) for name in terms[0]}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_overfits_a_small_batch(kind: str) -> None:
    """250 Adam steps on 8 samples with every loss on: the imitation term falls at least threefold (dp's noise
    prediction the least, 4.5x; the others 18x and more) and so does the contrastive one; samples come from the
    conditioning alone, finite and shaped, and but for dp's they lie within 0.04 to 0.09 m of the expert's on average
    (dp's DDIM samples need far longer training: 0.6 m and more here)."""
    batch = synthetic_batch(8)
    model = make_model(replace(TINY, kind=kind))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    before = mean_terms(model, batch)
    generator = torch.Generator().manual_seed(2)
    for _ in range(250):
        loss, _ = model.loss(batch, generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = mean_terms(model, batch)
    assert set(after) == {"imitation", "esdf", "contrastive"} | ({"kl"} if kind in ("vae", "act") else set())
    assert after["imitation"] < before["imitation"] / 3, (before, after)
    assert after["contrastive"] < before["contrastive"] / 3, (before, after)

    samples = model.sample(conditioning(batch), 4, torch.Generator().manual_seed(3))
    assert samples.shape == (8, 4, SMALL.waypoints, 3)
    assert torch.isfinite(samples).all()
    if kind != "dp":
        expert = batch["trajectory"][:, None, :, :2]
        error = (samples[..., :2] - expert).norm(dim=-1).mean()
        mean_error = (expert - expert.mean(0)).norm(dim=-1).mean()  # predicting the batch's mean trajectory: 0.27 m
        assert error < 0.12 and error < mean_error / 2, (error, mean_error)


def test_a_voxel_planner_learns_what_only_the_encoder_tokens_show() -> None:
    """Eight windows alike but for the 4D encoder's tokens, which alone tell whether the expert turns left or right:
    the planner that attends to them learns both turns; one without them can do no better than their average."""
    batch = synthetic_batch(8)
    turning = int(batch["trajectory"][:, -1, 1].abs().argmax())
    side = torch.tensor([1.0, -1.0]).repeat(4)
    alike = {name: batch[name][turning : turning + 1].expand_as(batch[name]) for name in CONDITIONING}
    trajectory = batch["trajectory"][turning].expand(8, -1, -1) * torch.stack([torch.ones(8), side, side], 1)[:, None]
    voxels = side[:, None, None] * torch.ones(8, 4, 16)
    data = alike | {"trajectory": trajectory, "voxels": voxels}
    errors = {}
    for tokens in (4, 0):
        model = make_model(replace(TINY, kind="bc", voxel_tokens=tokens, esdf_weight=0.0, contrastive_weight=0.0))
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(150):
            loss, _ = model.loss(data)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        planned = model.sample({name: data[name] for name in (*CONDITIONING, "voxels")}, 1)[:, 0]
        errors[tokens] = float((planned[..., :2] - trajectory[..., :2]).norm(dim=-1).mean())
    turn = float(trajectory[0, :, 1].abs().mean())  # each side's distance from the average of the two
    assert turn > 0.1 and errors[4] < turn / 5 and errors[0] > turn / 2, (errors, turn)


@pytest.mark.parametrize("kind", KINDS)
def test_samples_vary_as_documented(kind: str) -> None:
    """Draws differ from each other, but bc's (a regression, repeated) and act's first (z = 0, ACT's own answer)."""
    model = make_model(replace(TINY, kind=kind))
    batch = conditioning(synthetic_batch(2))
    first, second = (model.sample(batch, 3, torch.Generator().manual_seed(seed)) for seed in (0, 1))
    if kind == "bc":
        assert torch.equal(first, second) and torch.equal(first[:, 0], first[:, 1])
    else:
        assert not torch.allclose(first[:, 1], second[:, 1]) and not torch.allclose(first[:, 1], first[:, 2])
        assert torch.equal(first[:, 0], second[:, 0]) == (kind == "act")


def _wall_esdf(wall_x: float, geometry: LocalGeometry = SMALL) -> torch.Tensor:
    """(1, G, G) the clearance (m) of the crop's cell centres to a wall filling x >= wall_x, 0 inside it."""
    centres = (torch.arange(geometry.grid) + 0.5) * geometry.resolution - geometry.half_extent_m
    return (wall_x - centres).clamp_min(0.0).expand(geometry.grid, -1)[None].float()


def test_push_off_obstacles_moves_near_waypoints_by_their_shortfall() -> None:
    """Wall at x >= 0.4 m, safe distance 0.3 m, at most 0.25 m a push: a waypoint at x = 0.3 (0.1 m short) moves back
    to x = 0.1; one at 0.38 moves the cap, to 0.13; one inside the wall, where the clearance is 0 and flat, and one
    at x = 0 stay; headings stay. Two samples each of two batch rows: the second row's wall, at x >= 1, moves none."""
    trajectory = torch.tensor([[[0.0, 0.2, 0.1], [0.3, 0.2, 0.2], [0.38, -0.2, 0.3], [0.6, 0.0, 0.4]]]).repeat(4, 1, 1)
    esdf = torch.cat([_wall_esdf(0.4), _wall_esdf(1.0)])
    pushed = push_off_obstacles(trajectory, esdf, safe_distance=0.3, step_m=0.25, geometry=SMALL)
    expected = torch.tensor([[[0.0, 0.2, 0.1], [0.1, 0.2, 0.2], [0.13, -0.2, 0.3], [0.6, 0.0, 0.4]]])
    torch.testing.assert_close(pushed[:2], expected.repeat(2, 1, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(pushed[2:], trajectory[2:])


@pytest.mark.parametrize("kind", KINDS)
def test_guided_samples_keep_off_a_wall(kind: str) -> None:
    """A wall just beyond an untrained planner's farthest waypoint: unguided, samples come nearer than the safe
    distance; guided by its clearance, every waypoint of every kind ends at least the safe distance from it (a flat
    wall: one push lands exactly). A slow robot keeps the untrained samples on the crop, as a trained one's are."""
    config = replace(TINY, kind=kind, max_speed=0.5)
    model = make_model(config)
    batch = conditioning(synthetic_batch(2))
    free = model.sample(batch, 4, torch.Generator().manual_seed(0))[..., 0]
    wall_x = float(free.max()) + 0.2
    esdf = _wall_esdf(wall_x).expand(2, -1, -1)
    guided = model.sample(batch, 4, torch.Generator().manual_seed(0), esdf, guidance_m=2.0)[..., 0]
    assert wall_x < SMALL.half_extent_m and (free > wall_x - config.safe_distance_m + 0.05).any()
    assert (guided <= wall_x - config.safe_distance_m + 1e-4).all()


# --- switches and checkpoints -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_loss_terms_follow_the_weights(kind: str) -> None:
    batch = synthetic_batch(4)
    config = replace(TINY, kind=kind, esdf_weight=0.7, contrastive_weight=0.3, kl_weight=0.2)
    total, terms = make_model(config).loss(batch, torch.Generator().manual_seed(0))
    assert set(terms) == {"imitation", "esdf", "contrastive"} | ({"kl"} if kind in ("vae", "act") else set())
    weights = {"imitation": 1.0, "esdf": 0.7, "contrastive": 0.3, "kl": 0.2}
    assert total.item() == pytest.approx(sum(weights[name] * value for name, value in terms.items()), rel=1e-5)

    without = {name: value for name, value in batch.items() if name != "esdf"}  # no ESDF needed when off
    model = make_model(replace(config, esdf_weight=0.0, contrastive_weight=0.0))
    _, terms = model.loss(without, torch.Generator().manual_seed(0))
    assert set(terms) == {"imitation"} | ({"kl"} if kind in ("vae", "act") else set())
    assert not hasattr(model, "state_projection")


def test_config_rejects_unknown_switches() -> None:
    with pytest.raises(ValueError):
        PlannerConfig(kind="gan")
    with pytest.raises(ValueError):
        PlannerConfig(attention="full")


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_round_trip(kind: str, tmp_path) -> None:
    """Every field of a non-default config comes back, and so do the samples of a fixed generator."""
    geometry = replace(SMALL, frames=3, waypoints=6, goal_ahead_m=2.0)
    config = replace(
        TINY, kind=kind, attention="causal", action_queries=False, flow_steps=3, max_speed=0.8, geometry=geometry
    )
    model = make_model(config)
    model.save_pretrained(tmp_path)
    loaded = LocalPlannerModel.from_pretrained(tmp_path)
    assert loaded.config == config
    batch = conditioning(synthetic_batch(2, geometry))
    samples = model.sample(batch, 3, torch.Generator().manual_seed(5))
    assert samples.shape == (2, 3, 6, 3)
    assert torch.equal(samples, loaded.sample(batch, 3, torch.Generator().manual_seed(5)))
