"""Astra-Local's planner on the robot: the model behind the LocalPlanner interface, its hand-overs to the classical
planner, and `astra eval planning` running every planner on the same episodes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from astra.cli import main
from models.astra_local.encoder4d import Encoder4D, Encoder4DConfig
from models.astra_local.pictures import as_batch, encoder_frames, picture_array, shrink_camera
from models.astra_local.planner import LocalPlannerModel, PlannerConfig
from models.astra_local.serving import HANDOVER_REASONS, AstraPlanner, AstraPlannerConfig, local_planner
from models.costmap import LocalCostmap
from models.local_planner import CameraView, DwaPlanner, LocalPlan
from models.navigation import se2
from models.navigation.local_navigator import LocalNavigator
from models.planning import ClearanceMap
from pipelines.planning_eval import (
    EVAL_ROBOT,
    EpisodeResult,
    PlanningConfig,
    collision_rate_upper95,
    paired_collisions,
    sample_episodes,
    summarize,
)
from schemas.local_dataset import LOCAL_GEOMETRY
from schemas.messages import Path as PathMsg
from schemas.messages import Twist
from schemas.topics import CAMERAS, ODOM_FRAME, TICK_S
from schemas.world import Agent, GridSpec, World
from sim.expert import ExpertConfig
from sim.simulator import Simulator
from tests.depth_views import front_view

TINY = PlannerConfig(kind="fm", d_model=32, layers=1, heads=2, contrastive_weight=0.0)
ROUTE = np.array([[2.0, 0.0], [4.0, 0.0], [6.0, 0.0]])


def _open_floor(wall_x: float | None = None) -> ClearanceMap:
    """An 8 m square around the origin, free but for a wall across the way at `wall_x`."""
    spec = GridSpec(0.05, (-4.0, -4.0), (160, 160))
    occupied = np.zeros(spec.shape, bool)
    if wall_x is not None:
        occupied[:, int((wall_x + 4.0) / 0.05)] = True
    return ClearanceMap.from_occupancy(occupied, spec)


def _observed(planner: AstraPlanner, seconds: float) -> None:
    costmap = LocalCostmap()
    for k in range(round(seconds * 10)):
        planner.observe(k * 100_000_000, (0.0, 0.0, 0.0), (0.0, 0.0), costmap)


def _learned(*answers: torch.Tensor) -> LocalPlannerModel:
    """A tiny model taught `answers` (each [K, 3]) for one and the same input, in equal shares."""
    torch.manual_seed(0)
    model = LocalPlannerModel(TINY)
    g = LOCAL_GEOMETRY
    batch = {
        "occupancy": torch.full((8, g.frames, g.grid, g.grid), 0.5),
        "velocity": torch.zeros(8, g.frames, 2),
        "motion": torch.zeros(8, g.frames, 3),
        "goal": torch.tensor([[g.goal_ahead_m, 0.0]]).repeat(8, 1),
        "trajectory": torch.stack(list(answers) * (8 // len(answers))),
        "esdf": torch.full((8, 2, g.grid, g.grid), 3.0),
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        loss, _ = model.loss(batch, torch.Generator().manual_seed(step if len(answers) > 1 else 0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _progress() -> torch.Tensor:
    """Each waypoint's share of the horizon, 1/K .. 1."""
    return torch.arange(1, LOCAL_GEOMETRY.waypoints + 1) / LOCAL_GEOMETRY.waypoints


def _straight(ahead_m: float) -> torch.Tensor:
    t = _progress()
    return torch.stack([t * ahead_m, 0 * t, 0 * t], dim=-1)


def _left_turn(radius_m: float) -> torch.Tensor:
    """A quarter circle to the left over the horizon."""
    heading = _progress() * math.pi / 2
    return torch.stack([radius_m * torch.sin(heading), radius_m * (1 - torch.cos(heading)), heading], dim=-1)


@pytest.fixture(scope="module")
def straight() -> LocalPlannerModel:
    return _learned(_straight(2.0))  # 1 m/s straight ahead


def test_the_classical_planner_drives_until_there_is_history_then_the_model_does(straight: LocalPlannerModel) -> None:
    planner = AstraPlanner(straight)
    clearance = _open_floor()
    _observed(planner, 0.5)
    warming = planner.plan((0.0, 0.0, 0.0), (0.0, 0.0), ROUTE, True, clearance)
    classical = DwaPlanner().plan((0.0, 0.0, 0.0), (0.0, 0.0), ROUTE, True, clearance)
    assert warming.handover == "warming_up" and (warming.v, warming.w) == (classical.v, classical.w)
    _observed(planner, 2.0)
    plan = planner.plan((0.0, 0.0, 0.0), (0.0, 0.0), ROUTE, True, clearance)
    assert plan.handover == "" and plan.status == "ok"
    # The model's answer, 1 m/s straight ahead (2 m over the 2 s horizon), as the arc to its second waypoint.
    assert plan.v == pytest.approx(1.0, abs=0.15) and abs(plan.w) < 0.2
    assert plan.candidates.shape == (AstraPlannerConfig().samples, LOCAL_GEOMETRY.waypoints, 2)
    assert planner.handovers == {"warming_up": 1} and planner.cycles == 2


def test_the_way_left_counts_from_the_robot_not_from_the_route(straight: LocalPlannerModel) -> None:
    """The last stretch of a route can be short (subgoals every metre, then the goal): 0.17 m here, with the robot
    2 m before it. The speed is capped to stop at the goal from the robot's way left, 2.17 m, not 0.17 m (which
    crept at 0.14 m/s, session 29: episodes timed out a metre from their goals)."""
    planner = AstraPlanner(straight)
    _observed(planner, 2.0)
    plan = planner.plan((0.0, 0.0, 0.0), (0.0, 0.0), np.array([[2.0, 0.0], [2.17, 0.0]]), True, _open_floor())
    assert plan.handover == "" and plan.remaining_m == pytest.approx(2.17, abs=0.01)
    assert plan.v == pytest.approx(1.0, abs=0.15)  # the model's 1 m/s, under the cap from 2.17 m (1.42 m/s)


def test_the_classical_planner_docks_at_the_final_goal(straight: LocalPlannerModel) -> None:
    """1 m from the final goal the classical planner takes over (the model, taught by tours that never stop, drove
    past goals beside it); alone, the model drives on and the hand-over is only counted; short of the last subgoal
    of a route that goes on, the model drives."""
    route = np.array([[1.0, 0.0]])
    for fallback in (True, False):
        planner = AstraPlanner(straight, AstraPlannerConfig(fallback=fallback))
        _observed(planner, 2.0)
        plan = planner.plan((0.0, 0.0, 0.0), (0.0, 0.0), route, True, _open_floor())
        assert planner.handovers == {"arriving": 1} and plan.handover == ("arriving" if fallback else "")
        if fallback:
            classical = DwaPlanner().plan((0.0, 0.0, 0.0), (0.0, 0.0), route, True, _open_floor())
            assert (plan.v, plan.w) == (classical.v, classical.w)
        planner.plan((0.0, 0.0, 0.0), (0.0, 0.0), route, False, _open_floor())
        assert planner.handovers == {"arriving": 1}


def test_after_a_recovery_the_classical_planner_drives_for_a_while(straight: LocalPlannerModel) -> None:
    """A recovery means no progress on the model's plans: the classical planner drives the next `stalled_cycles`
    cycles, then the model again; alone, those cycles are only counted."""
    for fallback in (True, False):
        planner = AstraPlanner(straight, AstraPlannerConfig(fallback=fallback, stalled_cycles=3))
        _observed(planner, 2.0)
        planner.stalled()
        plans = [planner.plan((0.0, 0.0, 0.0), (0.0, 0.0), ROUTE, True, _open_floor()) for _ in range(4)]
        assert [p.handover for p in plans] == ["stalled"] * 3 * fallback + [""] * (4 - 3 * fallback)
        assert planner.handovers == {"stalled": 3}
        if fallback:
            classical = DwaPlanner().plan((0.0, 0.0, 0.0), (0.0, 0.0), ROUTE, True, _open_floor())
            assert (plans[0].v, plans[0].w) == (classical.v, classical.w)


def test_a_command_into_a_wall_goes_to_the_classical_planner_and_alone_turns_in_place(
    straight: LocalPlannerModel,
) -> None:
    """Every sample runs into the wall 0.6 m ahead. With the fallback the classical planner takes the cycle; alone the
    hand-over is only counted and the model turns in place as its sample turns, or, without that, drives on into it."""
    clearance = _open_floor(wall_x=0.6)
    for fallback, turn_in_place in ((True, True), (False, True), (False, False)):
        config = AstraPlannerConfig(fallback=fallback, turn_in_place=turn_in_place)
        planner = AstraPlanner(straight, config)
        _observed(planner, 2.0)
        plan = planner.plan((0.0, 0.0, 0.0), (0.0, 0.0), ROUTE, True, clearance)
        assert planner.handovers == {"unsafe": 1}
        if fallback:  # the classical planner's plan, which keeps out of the wall
            assert plan.handover == "unsafe" and plan.v < 0.5
        elif turn_in_place:
            assert plan.handover == "" and plan.v == 0.0 and planner.holds == 1
            assert np.allclose(plan.trajectory[:, :2], 0.0, atol=1e-6)  # the rollout shown is the one driven
        else:  # the model's own command, straight on
            assert plan.handover == "" and plan.v > 0.8 and planner.holds == 0
    assert set(planner.handovers) <= set(HANDOVER_REASONS)


@pytest.fixture(scope="module")
def two_ways() -> LocalPlannerModel:
    """Taught two answers, the model's samples spread in speed: fast straight on, or a slow turn."""
    return _learned(_straight(2.0), _left_turn(0.4))


def _alone_by_choice(model: LocalPlannerModel, clearance: ClearanceMap, handovers: dict[str, int]) -> dict:
    """The model's plan alone, its sample chosen by the checks (True) and the nearest the samples' mean (False),
    among its first samples (no retry), driven whatever its gap (no turning in place)."""
    plans = {}
    for choose_safe in (True, False):
        config = AstraPlannerConfig(
            fallback=False, choose_safe=choose_safe, unsure_spread_m=math.inf, retry_guidance_m=0.0, turn_in_place=False
        )
        planner = AstraPlanner(model, config)
        _observed(planner, 2.0)
        plans[choose_safe] = planner.plan((0.0, 0.0, 0.0), (0.0, 0.0), ROUTE, True, clearance)
        assert planner.handovers == (handovers if choose_safe else {"unsafe": 1})
    return plans


def _vetted(plan: LocalPlan, clearance: ClearanceMap) -> tuple[bool, float]:
    _, passes, gap = DwaPlanner().vet((0.0, 0.0, 0.0), (0.0, 0.0), np.array([[plan.v, plan.w]]), clearance)
    return bool(passes[0]), float(gap[0])


def test_a_sample_that_passes_the_checks_is_followed_before_any_is_handed_over(two_ways: LocalPlannerModel) -> None:
    clearance = _open_floor(wall_x=1.0)  # the fast samples fail the checks
    plans = _alone_by_choice(two_ways, clearance, {})
    safe, nearest = plans[True], plans[False]
    assert safe.chosen != nearest.chosen and safe.v < nearest.v
    assert _vetted(safe, clearance)[0]


def test_where_no_sample_passes_the_one_that_comes_least_close_is_followed(two_ways: LocalPlannerModel) -> None:
    clearance = _open_floor(wall_x=0.5)  # every sample fails the checks
    plans = _alone_by_choice(two_ways, clearance, {"unsafe": 1})
    (passes, gap), (nearest_passes, nearest_gap) = _vetted(plans[True], clearance), _vetted(plans[False], clearance)
    assert not passes and not nearest_passes
    assert plans[True].chosen != plans[False].chosen and gap > nearest_gap + 0.05


def test_guidance_keeps_the_plan_short_of_a_wall_the_cameras_see(straight: LocalPlannerModel) -> None:
    """The model goes straight on at 1 m/s; the front camera sees a wall 0.9 m ahead. Unguided, a waypoint comes
    within the safe distance of it; guided by the costmap's ESDF, none short of the wall does (to a crop cell)."""
    wall_x = 0.9
    costmap = LocalCostmap()
    planners = {g: AstraPlanner(straight, AstraPlannerConfig(fallback=False, guidance_m=g)) for g in (0.0, 0.3)}
    for k in range(20):
        costmap.update(k * 100_000_000, (0.0, 0.0, 0.0), [front_view([(wall_x, -1.5, 1.5)])])
        for planner in planners.values():
            planner.observe(k * 100_000_000, (0.0, 0.0, 0.0), (0.0, 0.0), costmap)
    near = wall_x - straight.config.safe_distance_m + LOCAL_GEOMETRY.resolution
    for guidance, planner in planners.items():
        x = planner.plan((0.0, 0.0, 0.0), (0.0, 0.0), ROUTE, True, costmap.clearance()).candidates[..., 0]
        short_of_wall = x[x < wall_x]
        assert (short_of_wall > near).any() == (guidance == 0.0), (guidance, np.round(short_of_wall, 2))


def test_where_no_sample_passes_the_model_samples_again_pushed_off_what_it_sees(straight: LocalPlannerModel) -> None:
    """The model goes straight on at 1 m/s toward a wall the front camera sees 0.9 m ahead: every sample fails the
    checks. Alone, its retry, guided by the costmap's ESDF, slows short of the wall and passes, and is followed;
    without the retry the plan alone runs into the wall (or turns in place). With the fallback the cycle is handed
    over at once, retry or not (the loop's time)."""
    costmap = LocalCostmap()
    configs = {(retry, fallback): AstraPlannerConfig(fallback=fallback, retry_guidance_m=retry, turn_in_place=False)
               for retry in (0.0, 0.3) for fallback in (False, True)}  # fmt: skip
    planners = {key: AstraPlanner(straight, config) for key, config in configs.items()}
    for k in range(20):
        costmap.update(k * 100_000_000, (0.0, 0.0, 0.0), [front_view([(0.9, -1.5, 1.5)])])
        for planner in planners.values():
            planner.observe(k * 100_000_000, (0.0, 0.0, 0.0), (0.0, 0.0), costmap)
    clearance = costmap.clearance()
    plans = {
        key: planner.plan((0.0, 0.0, 0.0), (0.0, 0.0), ROUTE, True, clearance) for key, planner in planners.items()
    }
    alone, retried = plans[0.0, False], plans[0.3, False]
    assert not _vetted(alone, clearance)[0] and alone.v > 0.8 and planners[0.0, False].handovers == {"unsafe": 1}
    assert _vetted(retried, clearance)[0] and retried.v < 0.6 and planners[0.3, False].handovers == {}
    assert planners[0.3, False].retries == 1 and planners[0.0, False].retries == 0
    assert plans[0.3, True].handover == plans[0.0, True].handover == "unsafe" and planners[0.3, True].retries == 0


def test_the_local_node_logs_each_hand_over_once_as_it_begins(straight: LocalPlannerModel) -> None:
    navigator = LocalNavigator(planner=AstraPlanner(straight))
    navigator.odometry._t_ns = 0  # a pose at the origin, as after the first wheel sample
    navigator.on_subgoals(PathMsg(0, ODOM_FRAME, (2.0, 4.0), (0.0, 0.0), (0.0, 0.0)))
    events = [out.detail for k in range(3) for name, out in navigator.plan(k * 100_000_000) if name == "nav_events"]
    assert events == ["warming_up"]


def test_a_planner_that_reads_the_cameras_plans_from_the_encoder_tokens_of_its_frames(office_world: Path) -> None:
    """Fed the simulator's sensors through the local node's core, a planner that attends to the 4D encoder's tokens
    plans from the tokens of exactly the frames it saw, each camera shrunk as the training set stores it and aligned
    by the filter's motions between them, cameras in their order; without the pictures it never plans blind."""
    encoder = Encoder4D(Encoder4DConfig(image_channels=8, depth_bins=8, lift_bins=2, bev_channels=8, token_grid=4))
    model = LocalPlannerModel(replace(TINY, voxel_tokens=16, voxel_channels=8))
    for with_pictures in (True, False):
        planner = AstraPlanner(model, AstraPlannerConfig(fallback=False), encoder=encoder)
        navigator = LocalNavigator(EVAL_ROBOT, planner=planner)
        sim = Simulator(office_world, EVAL_ROBOT, seed=0)
        seen: dict[tuple[int, str], object] = {}
        try:
            for _ in range(round((2.2 if with_pictures else 0.6) / TICK_S)):
                for output_id, msg in sim.advance(Twist(sim.t_ns, (0.3, 0.0, 0.0), (0.0, 0.0, 0.2)), TICK_S):
                    if with_pictures or not output_id.startswith("image_"):
                        navigator.on_sensor(output_id, msg)
                    seen[(getattr(msg, "t_ns", 0), output_id)] = msg
        finally:
            sim.close()
        plan = planner.plan(navigator.odometry.pose(), (0.3, 0.2), ROUTE, True, _open_floor())
        if not with_pictures:
            assert plan.handover == "warming_up" and planner.last_observation is None
            continue
        observed = planner.last_observation
        assert plan.handover == "" and np.diff(observed.frame_t_ns).tolist() == [500_000_000] * 3
        poses = [(0.0, 0.0, 0.0)]  # each frame in the newest's ego, from the motions between them
        for motion in observed.motion[:0:-1]:
            poses.insert(0, se2.compose(poses[0], se2.inverse(tuple(motion))))
        kinds = ("image", "depth", "camera_info")
        views = [[CameraView(*(seen[(t, f"{k}_{c}")] for k in kinds)) for c in CAMERAS] for t in observed.frame_t_ns]
        frames = [[shrink_camera(v.picture.data, v.metres(), v.info, LOCAL_GEOMETRY) for v in vs] for vs in views]
        fields = encoder_frames(
            np.stack([[picture_array(c.jpeg) for c in cameras] for cameras in frames]),
            np.stack([[c.depth for c in cameras] for cameras in frames]),
            np.asarray([c.k for c in frames[-1]], np.float32).reshape(-1, 3, 3),
            np.asarray(poses),
        )
        with torch.inference_mode():
            expected = encoder.encode(as_batch(fields))["tokens"][0].numpy()
        np.testing.assert_allclose(observed.voxels, expected, atol=1e-4)
        assert np.abs(expected).max() > 0


def test_eval_planning_runs_every_planner_on_the_same_episodes(
    straight: LocalPlannerModel, office_world: Path, tmp_path: Path
) -> None:
    straight.save_pretrained(tmp_path / "weights" / "fm_esdf")
    astra = Path(sys.executable).parent / "astra"
    argv = [
        "eval",
        "planning",
        "--world",
        str(office_world),
        "--episodes",
        "1",
        "--time-limit",
        "8",
        "--weights",
        str(tmp_path / "weights"),
        "--json",
        "--workers",
        "2",
    ]
    proc = subprocess.run([astra, *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [line] = proc.stdout.strip().splitlines()  # --json: the JSON line alone, nothing a library printed
    summary = json.loads(line)
    assert summary["episodes"] == 1 and list(summary["planners"]) == ["classical", "fm_esdf", "astra"]
    for name, figures in summary["planners"].items():
        assert set(figures) >= {
            "collision_rate",
            "progress",
            "mean_speed",
            "score",
            "latency_p50_ms",
            "latency_p99_ms",
            "handover_rate",
            "collisions",
            "collision_rate_upper95",
            "collided_episodes",
        }, name
        assert figures["latency_p99_ms"] >= figures["latency_p50_ms"] > 0
        assert figures["collision_rate_upper95"] == collision_rate_upper95(figures["collisions"], 1)
    assert summary["planners"]["classical"]["progress"] > 0.2
    assert summary["planners"]["classical"]["handover_rate"] == 0
    astra_figures = summary["planners"]["astra"]
    assert set(astra_figures["handover_rates"]) == set(HANDOVER_REASONS)
    assert sum(astra_figures["handover_rates"].values()) == pytest.approx(astra_figures["handover_rate"], abs=0.005)


def test_no_episode_starts_where_a_person_stands(office_world: Path) -> None:
    world = World.load(office_world)
    config = PlanningConfig(episodes=6, seed=3)
    alone = sample_episodes(world, config)
    # People standing on the first three starts when the episodes begin, as a generated building may put them.
    people = tuple(
        Agent(f"p{i}", "person", (e.start[:2], (e.start[0] + 1.0, e.start[1])), 1.0, 0.25)
        for i, e in enumerate(alone[:3])
    )
    among_people = sample_episodes(replace(world, agents=people), config)
    assert len(among_people) == 6
    expert = ExpertConfig()  # the gap the expert keeps to people
    for episode in among_people:
        for person in people:
            gap = math.dist(episode.start[:2], person.waypoints[0])
            assert gap >= person.radius + expert.robot_radius + expert.agent_margin, (
                episode.start,
                person.waypoints[0],
            )
    # Where no one stands in the way the draw is the same: results before this rule stay comparable.
    assert [e.start for e in sample_episodes(world, config)] == [e.start for e in alone]


def test_the_collision_bound_is_the_rate_at_which_so_few_collisions_have_a_5_percent_chance() -> None:
    # None in n: (1 - p)^n = 0.05, so p = 1 - 0.05^(1/n): 600 episodes are what the 0.5 % asks.
    assert collision_rate_upper95(0, 600) == pytest.approx(1 - 0.05 ** (1 / 600), abs=1e-4)
    assert round(collision_rate_upper95(0, 600), 3) == 0.005
    assert collision_rate_upper95(0, 16) == pytest.approx(1 - 0.05 ** (1 / 16), abs=1e-4)
    # Three in 40: the rate p at which 3 or fewer collisions have probability 0.05, by the binomial sum.
    p = collision_rate_upper95(3, 40)
    assert sum(math.comb(40, k) * p**k * (1 - p) ** (40 - k) for k in range(4)) == pytest.approx(0.05, abs=1e-3)
    assert collision_rate_upper95(4, 40) > p > 3 / 40
    assert collision_rate_upper95(2, 2) == collision_rate_upper95(0, 0) == 1.0
    # A collision flag compared from the simulator's numpy speeds still gives the eval a JSON line.
    results = [EpisodeResult("fm", i, np.bool_(i == 0), False, 0.5, 10.0, 3.0, [20.0], 100, {}) for i in range(2)]
    summary = json.loads(json.dumps(summarize(results)))
    assert summary["collisions"] == 1 and summary["collision_rate_upper95"] == collision_rate_upper95(1, 2)
    assert summary["collided_episodes"] == [0]


def test_two_planners_on_the_same_episodes_are_compared_where_only_one_collided() -> None:
    with_esdf = [True, False, False, False, False, False, True, False]
    without = [True, True, True, True, True, True, False, False]
    pair = paired_collisions(with_esdf, without)
    # Both collided in episode 0: it says nothing. Only one did in 6: 1 against 5, whose two-sided exact chance
    # under a fair coin is (C(6,0) + C(6,1) + C(6,5) + C(6,6)) / 2^6.
    assert (pair["episodes"], pair["only_first"], pair["only_second"]) == (8, 1, 5)
    assert pair["p_value"] == pytest.approx(14 / 64, abs=1e-4)
    assert paired_collisions(without, with_esdf)["p_value"] == pair["p_value"]
    assert paired_collisions([False] * 3, [False] * 3)["p_value"] == 1.0
    with pytest.raises(ValueError, match="differ in number"):
        paired_collisions([True], [True, False])


def test_eval_planning_names_what_is_wrong_with_its_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for argv, said in (
        (["--planners", "fast"], "unknown planner 'fast'"),
        (["--guidance", "-0.1"], "guidance must be >= 0"),
        (["--retry-guidance", "-0.1"], "retry guidance must be >= 0"),
        (["--weights", str(tmp_path), "--planners", "fm"], "no trained fm"),
        (["--world", str(tmp_path)], "holds no world.json"),
    ):
        with pytest.raises(SystemExit) as exit_:  # in process: each `astra` start would import torch again
            main(["eval", "planning", *argv])
        assert exit_.value.code == 2 and said in capsys.readouterr().err, said


def test_astra_local_chooses_the_committed_planner_and_refuses_others(monkeypatch: pytest.MonkeyPatch) -> None:
    from operators import config

    assert type(local_planner("classical")) is DwaPlanner
    planner = local_planner("astra")
    assert isinstance(planner, AstraPlanner) and planner.config.fallback
    assert planner.model.config.kind == "fm" and planner.model.config.esdf_weight > 0
    with pytest.raises(ValueError, match="unknown local planner"):
        local_planner("fast")
    monkeypatch.setenv("ASTRA_LOCAL", "fast")
    with pytest.raises(config.ConfigError, match="ASTRA_LOCAL"):
        config.local_planner()
    assert config.local_planner("astra") == "astra"
