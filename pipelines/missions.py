"""Missions run in-process: the navigation graph's cores stepped together with the simulator, faster than real time.

`run_mission` wires the cores as dataflow.yml wires the nodes (sensor -> global -> local -> actuation, with the
same message types and rates), but on one thread and on simulated time: relocalization is computed at once and
its result delivered to `global` after the wall time it took, as the node's worker thread would. The truth is
read only here, to score the mission; no core sees it.

Missions are scored as models.navigation.scoring defines.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datasets.map_store import TopoMap
from datasets.navigation import global_navigator
from models.astra_local.serving import local_planner
from models.goals import GoalResolver
from models.localization import RigLocalizer
from models.navigation import se2
from models.navigation.global_navigator import GlobalNavigator, GlobalParams
from models.navigation.local_navigator import LocalNavigator
from models.navigation.scoring import fix_record, mission_success, relocalization_summary, spl
from models.navigation.se2 import Pose2
from models.planning import ClearanceMap, GridPlanner, occupancy_grid, path_length
from models.safety import SafetyGovernor
from schemas.messages import (
    MISSION_FINAL_STATES,
    CompressedImage,
    Event,
    LocalizationResult,
    MissionGoal,
    MissionStatus,
    Twist,
)
from schemas.robot import DEFAULT_ROBOT, RobotConfig
from schemas.topics import BY_OUTPUT, TICK_S
from schemas.world import World
from sim.missions import Mission
from sim.simulator import MOVING_MPS, SIGHTED, Simulator

Output = tuple[str, object]


@dataclass(frozen=True)
class MissionConfig:
    time_limit_s: float = 180.0
    actuation_hz: float = BY_OUTPUT["cmd_vel"].rate_hz
    blind_agents: bool = False  # people and carts walk into a robot in their way too: the stress test
    localization: str = "classical"  # how `global` localizes (datasets.navigation.LOCALIZATION): ASTRA_GLOBAL
    planner: str = "classical"  # what `local` plans with (models.astra_local.serving.LOCAL_PLANNERS): ASTRA_LOCAL


@dataclass
class MissionOutcome:
    """One mission's result, as `astra navigate` and `astra eval mission` print it."""

    instruction: str
    goal_room: str
    resolved_room: str
    goal_label: str
    state: str
    success: bool
    goal_correct: bool
    time_s: float
    path_length_m: float
    shortest_m: float
    spl: float
    final_error_m: float
    collisions: int
    collisions_moving: int  # of those, the ones where the robot moved (> MOVING_MPS), not only was walked into
    fallbacks: int
    recoveries: int
    contacts: list[dict[str, Any]] = field(default_factory=list)  # each collision, with what the robot made of it
    relocalizations: list[dict[str, Any]] = field(default_factory=list)
    local_ms: list[float] = field(default_factory=list)
    driving_s: float = 0.0
    global_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The mission's JSON fields, timings and relocalizations summarised."""
        out = {
            k: v for k, v in asdict(self).items() if k not in ("relocalizations", "local_ms", "global_ms", "driving_s")
        }
        return out | {"localization_errors": relocalization_summary(self.relocalizations)}


class MissionRunner:
    """Runs missions on one map of one building; the localizer and text encoder load once for all of them."""

    def __init__(
        self,
        world_dir: Path,
        topo_map: TopoMap,
        world_from_map: Pose2,
        robot: RobotConfig = DEFAULT_ROBOT,
        config: MissionConfig = MissionConfig(),
        params: GlobalParams | None = None,
    ) -> None:
        self.world_dir = Path(world_dir)
        self.world = World.load(self.world_dir)
        self.topo_map = topo_map
        self.world_from_map = world_from_map
        self.robot = robot
        self.config = config
        self.params = params or GlobalParams()
        prototype = global_navigator(topo_map, robot, self.params, config.localization)
        self._localizer: RigLocalizer = prototype.localizer
        self._resolver: GoalResolver = prototype.resolver
        self._clearance = ClearanceMap.from_occupancy(occupancy_grid(self.world), self.world.grid)

    def _navigator(self) -> GlobalNavigator:
        return GlobalNavigator(self._localizer, self._resolver, self.topo_map.nodes, self.topo_map.edges, self.params)

    def run(self, mission: Mission, seed: int = 0, on_message: Any = None) -> MissionOutcome:
        """Drive one mission to its end; `on_message(output_id, msg)` sees every message (for recording)."""
        run = _MissionRun(self, mission, seed, on_message)
        try:
            return run.drive()
        finally:
            run.sim.close()

    def shortest_path_m(self, start: tuple[float, float], goal: tuple[float, float]) -> float:
        """The true shortest free path, at the robot's clearance, for SPL."""
        planner = GridPlanner(self._clearance, self.robot.radius + 0.05)
        path = planner.plan(np.array(start), np.array(goal))
        return path_length(path) if path is not None else math.hypot(goal[0] - start[0], goal[1] - start[1])


class _MissionRun:
    """The state of one mission: the simulator and every core, and what the score needs."""

    def __init__(self, runner: MissionRunner, mission: Mission, seed: int, on_message: Any) -> None:
        self.runner = runner
        self.mission = mission
        self.on_message = on_message
        sight = None if runner.config.blind_agents else SIGHTED
        self.sim = Simulator(runner.world_dir, runner.robot, seed=seed, agent_sight=sight)
        self.sim.place(*mission.start)
        self.start_ns = self.sim.t_ns
        self.global_nav = runner._navigator()
        self.local = LocalNavigator(runner.robot, planner=local_planner(runner.config.planner))
        self.governor = SafetyGovernor()
        self.images: dict[str, CompressedImage] = {}
        self.pending_fix: tuple[int, Any, int, str, float] | None = None  # deliver at, fix, stamp, trigger, s
        self.truth: dict[int, tuple[float, float, float]] = {}
        self.status: MissionStatus | None = None
        self.cmd: Twist | None = None
        self.fallbacks = 0
        self.recoveries = 0
        self.fixes: list[dict[str, Any]] = []
        self.global_s: list[float] = []
        self.slowing: frozenset[str] = frozenset()
        self.path_length = 0.0
        self.collisions_moving = 0  # collisions while the robot itself moved, not only being walked into
        self.contacts: list[dict[str, Any]] = []
        self.driving_s = 0.0  # time the planner had somewhere to go

    def drive(self) -> MissionOutcome:
        cfg = self.runner.config
        sim = self.sim
        start_ns = self.start_ns
        plan_period = int(1e9 / self.local.params.plan_hz)
        actuation_period = int(1e9 / cfg.actuation_hz)
        next_plan, next_actuation = start_ns, start_ns
        self._send(self.global_nav.on_mission_goal(MissionGoal(start_ns, "mission", self.mission.instruction)))
        last_xy = sim.pose()[:2]
        while sim.t_ns - start_ns < cfg.time_limit_s * 1e9:
            for output_id, msg in sim.advance(self.cmd, TICK_S):
                self._sensor(output_id, msg)
            self.cmd = None
            now = sim.t_ns
            x, y, _ = sim.pose()
            self.path_length += math.hypot(x - last_xy[0], y - last_xy[1])
            last_xy = (x, y)
            self._relocalize(now)
            self.driving_s += TICK_S * self.local.driving
            if now >= next_plan:
                next_plan += plan_period
                self._send(self.local.plan(now))
            if now >= next_actuation:
                next_actuation += actuation_period
                self.cmd = self.governor.step(now)
                self._send([("cmd_vel", self.cmd)])
                self._safety_events(now)
            if self.status is not None and self.status.state in MISSION_FINAL_STATES:
                break
        return self._outcome((sim.t_ns - start_ns) * 1e-9)

    # Wiring, as in dataflow.yml.

    def _sensor(self, output_id: str, msg: object) -> None:
        if output_id == "tf":
            return  # as the sensor node with ASTRA_SIM_TF=0: /tf is the stack's
        if output_id == "events" and msg.kind == "collision":
            self.collisions_moving += msg.value > MOVING_MPS
            self.contacts.append(self._contact(msg))
        if self.on_message:
            self.on_message(output_id, msg)
        if output_id == "ground_truth":
            self.truth[msg.t_ns] = (msg.position[0], msg.position[1], se2.yaw_of(msg.orientation))
        elif output_id == "imu":
            self.local.on_imu(msg)
        elif output_id == "wheels":
            self._send(self.local.on_wheels(msg))
        elif output_id.startswith("camera_info_"):
            self.local.on_camera_info(msg)
        elif output_id.startswith("depth_"):
            self._send(self.local.on_depth(msg))
        elif output_id.startswith("image_"):
            self.images[output_id.removeprefix("image_")] = msg
            self.local.on_image(msg)

    def _contact(self, collision: Event) -> dict[str, Any]:
        """A collision and what the stack made of the moment: its planner's status, and the gap it saw to the
        nearest moving obstacle it tracked (edge to edge, None when it tracked none), so runs that do not replay
        (fixes arrive after real computing time) can still be told apart."""
        tracks = self.local.tracker.obstacles()
        seen_gap = None
        if len(tracks) and self.local.odometry.t_ns is not None:
            gaps = np.hypot(*(tracks.position - self.local.odometry.pose()[:2]).T) - tracks.radius
            seen_gap = round(float(gaps.min()) - self.runner.robot.radius, 3)
        plan = self.local.last_plan
        contact = {
            "t_s": round((collision.t_ns - self.start_ns) * 1e-9, 2),
            "hit": collision.detail,
            "robot_v": round(self.sim.velocity()[0], 3),
            "planner": plan.status if plan is not None else None,
            "seen_gap_m": seen_gap,
        }
        # The agent hit, in the robot's frame from the truth, and how long since it last turned: a cart that turns
        # back at the end of its beat is another case than one the robot drove into.
        truth = self.sim.obstacles()
        agent = collision.detail.removeprefix("agent_")
        if agent in truth.ids:
            i = truth.ids.index(agent)
            x, y, yaw = self.sim.pose()
            c, s = math.cos(yaw), math.sin(yaw)
            dx, dy, vx, vy = truth.x[i] - x, truth.y[i] - y, truth.vx[i], truth.vy[i]
            contact |= {
                "agent_at": [round(c * dx + s * dy, 2), round(-s * dx + c * dy, 2)],
                "agent_v": [round(c * vx + s * vy, 2), round(-s * vx + c * vy, 2)],
                "agent_turned_s_ago": round(self.sim.agents_since_turn()[agent], 2),
            }
        return contact

    def _send(self, outputs: list[Output]) -> None:
        """Deliver outputs of global, local and actuation to their consumers."""
        for output_id, msg in outputs:
            if self.on_message:
                self.on_message(output_id, msg)
            if output_id == "local_odom":
                self.global_nav.on_local_odom(msg)
            elif output_id == "local_cmd":
                self.governor.on_command(msg, self.sim.t_ns)
            elif output_id == "subgoals":
                self.local.on_subgoals(msg)
            elif output_id == "moving_obstacles":
                self.governor.set_people(msg)
            elif output_id == "localization":
                self.governor.on_localization(msg)
                self._score_fix(msg)
            elif output_id == "nav_events":
                self.recoveries += msg.kind == "recovery"
                self._send(self.global_nav.on_event(msg))
            elif output_id == "mission_status":
                self.status = msg
                self.local.on_mission_status(msg)

    def _safety_events(self, now: int) -> None:
        reason = self.governor.stopping_reason
        started = self.governor.slowing_reasons - self.slowing
        if reason == "localization_lost":
            started = started | {reason}
        self.slowing = self.governor.slowing_reasons
        for kind in sorted(started):
            self.fallbacks += kind == "localization_fallback"
            event = Event(now, kind, "actuation", "", 0.0)
            if self.on_message:
                self.on_message("safety_events", event)
            self._send(self.global_nav.on_event(event))

    def _relocalize(self, now: int) -> None:
        if self.pending_fix is not None and now >= self.pending_fix[0]:
            _, fix, t_img, trigger, seconds = self.pending_fix
            self.pending_fix = None
            self._send(self.global_nav.on_fix(fix, t_img, trigger, (now - t_img) * 1e-9))
        if self.pending_fix is not None or (trigger := self.global_nav.due_relocalization(now)) is None:
            return
        stamps = {m.t_ns for m in self.images.values()}
        if len(self.images) < len(self.runner.robot.cameras) or len(stamps) != 1:
            return
        t_img = stamps.pop()
        job = self.global_nav.localization_job(t_img, trigger)
        started = time.perf_counter()
        fix = job(dict(self.images))
        seconds = time.perf_counter() - started
        self.global_s.append(seconds)
        self.global_nav.started_relocalization(now)
        self.pending_fix = (now + max(int(seconds * 1e9), int(TICK_S * 1e9)), fix, t_img, trigger, seconds)

    # Scoring, against the truth.

    def _score_fix(self, msg: LocalizationResult) -> None:
        truth = self.truth[min(self.truth, key=lambda t: abs(t - msg.t_ns))] if self.truth else None
        pose = (msg.position[0], msg.position[1], se2.yaw_of(msg.orientation))
        minimum = self.runner.params.min_confidence
        world_from_map = self.runner.world_from_map
        self.fixes.append(fix_record(world_from_map, msg.t_ns, msg.success, msg.confidence, pose, truth, minimum))

    def _outcome(self, seconds: float) -> MissionOutcome:
        runner, mission = self.runner, self.mission
        goal = self.global_nav.goal
        state = self.status.state if self.status is not None else "failed"
        if state not in MISSION_FINAL_STATES:
            state = "timeout"
        resolved_room, error_m, goal_correct = "", math.inf, False
        if goal is not None:
            gx, gy, _ = se2.compose(runner.world_from_map, goal.pose)
            room = runner.world.room_at(gx, gy)
            resolved_room = room.name if room else ""
            goal_correct = resolved_room == mission.goal_room
            x, y, _ = self.sim.pose()
            error_m = math.hypot(x - gx, y - gy)
            shortest = runner.shortest_path_m(mission.start[:2], (gx, gy))
        else:
            shortest = math.nan
        collisions = self.sim.collisions
        success = mission_success(state, error_m, collisions, goal_correct)
        return MissionOutcome(
            instruction=mission.instruction,
            goal_room=mission.goal_room,
            resolved_room=resolved_room,
            goal_label=goal.label if goal else "",
            state=state,
            success=success,
            goal_correct=goal_correct,
            time_s=seconds,
            path_length_m=self.path_length,
            shortest_m=shortest,
            spl=spl(success, shortest, self.path_length),
            final_error_m=error_m,
            collisions=collisions,
            collisions_moving=self.collisions_moving,
            fallbacks=self.fallbacks,
            recoveries=self.recoveries,
            contacts=self.contacts,
            relocalizations=self.fixes,
            local_ms=[s * 1e3 for s in self.local.plan_seconds],
            driving_s=self.driving_s,
            global_ms=[s * 1e3 for s in self.global_s],
        )


def summarize(outcomes: list[MissionOutcome], sim_seconds: float | None = None) -> dict[str, Any]:
    """The protocol's JSON: success, SPL, collisions, fallbacks, goal accuracy, relocalization and timings."""
    n = len(outcomes)
    local_ms = np.array([ms for o in outcomes for ms in o.local_ms]) if n else np.zeros(0)
    global_ms = np.array([ms for o in outcomes for ms in o.global_ms]) if n else np.zeros(0)
    driving_s = sum(o.driving_s for o in outcomes)
    plans = sum(len(o.local_ms) for o in outcomes)
    return {
        "missions": n,
        "success_rate": float(np.mean([o.success for o in outcomes])) if n else None,
        "spl": float(np.mean([o.spl for o in outcomes])) if n else None,
        "collisions": int(sum(o.collisions for o in outcomes)),
        "collisions_per_mission": float(np.mean([o.collisions for o in outcomes])) if n else None,
        "collisions_moving": int(sum(o.collisions_moving for o in outcomes)),
        "fallback_rate": float(np.mean([o.fallbacks > 0 for o in outcomes])) if n else None,
        "goal_accuracy": float(np.mean([o.goal_correct for o in outcomes])) if n else None,
        "relocalization": relocalization_summary([f for o in outcomes for f in o.relocalizations]),
        "local_hz": plans / driving_s if driving_s else None,  # planning cycles while there was somewhere to go
        "local_p99_ms": float(np.percentile(local_ms, 99)) if len(local_ms) else None,
        "global_p50_ms": float(np.percentile(global_ms, 50)) if len(global_ms) else None,
        "global_p99_ms": float(np.percentile(global_ms, 99)) if len(global_ms) else None,
        "per_mission": [o.summary() for o in outcomes],
    }


# The whole protocol on one building: world, mapping tour, lake, map, missions.

TOUR_SECONDS = {"office": 90.0, "home": 90.0, "warehouse": 120.0, "hospital": 150.0}  # cover every room


@dataclass(frozen=True)
class Building:
    """A generated building with its map, ready for missions."""

    world_dir: Path
    map_dir: Path
    lake: Path


class StaleBuildingError(ValueError):
    """A cached building was written by another version of the world generator."""


def _written_differently(world: World, world_dir: Path) -> bool:
    """Whether `world_dir` holds other files than `write_world` writes for `world` now (layout, scene or textures)."""
    from sim.world import write_world

    def files(root: Path) -> dict[str, bytes]:
        return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}

    with tempfile.TemporaryDirectory() as fresh:
        write_world(world, Path(fresh))
        return files(Path(fresh)) != files(world_dir)


def prepare_building(
    kind: str, seed: int, dynamic: bool, work_dir: Path, tour_seconds: float | None = None, progress: bool = True
) -> Building:
    """Generate the world, record an expert mapping tour in-process, ingest it and build the map, under `work_dir`.

    Every step is skipped where its output exists, so an interrupted evaluation resumes; a building the simulator
    now draws differently (StaleBuildingError) is refused rather than evaluated on a map of the old one.
    """
    from datasets.tours import record_tour
    from pipelines.ingest import ingest
    from pipelines.mapping import build_site_map
    from sim.world import generate_world, write_world

    world = generate_world(kind, seed, dynamic=dynamic)
    world_dir, lake, map_dir = work_dir / "world", work_dir / "lake", work_dir / "map"
    if not (world_dir / "world.json").is_file():
        write_world(world, world_dir)
    elif _written_differently(world, world_dir):
        raise StaleBuildingError(
            f"{work_dir} holds a {kind} seed {seed} that this version of the simulator draws differently; "
            "its tour, lake and map would not match the building: remove the folder, or use another"
        )
    tour = work_dir / "logs" / f"{world.site}-tour.mcap"
    if not tour.is_file():
        tour.parent.mkdir(parents=True, exist_ok=True)
        partial = tour.with_suffix(".partial")
        record_tour(world_dir, partial, tour_seconds or TOUR_SECONDS[kind], seed=seed)
        partial.rename(tour)
    if not (lake / "episodes").is_dir():
        ingest([tour], lake, progress=progress)
    if not (map_dir / "manifest.json").is_file():
        # Missions score text goals against the rooms the annotation names; the detector cannot tell rooms.
        build_site_map(lake, world.site, map_dir, extractor="annotated", progress=progress)
    return Building(world_dir, map_dir, lake)


MIN_ROOM_KEYFRAMES = 3  # a room the tour only peeked into (one keyframe inside its door) is not mapped


def mapped_rooms(world: World, topo_map: TopoMap, world_from_map: Pose2) -> list[str]:
    """Names of the rooms the mapping tour covered: MIN_ROOM_KEYFRAMES keyframes or more inside."""
    from collections import Counter

    from models.routing import base_poses

    # One position per keyframe: the rig's nodes of one instant share (episode_id, t_ns) and base_link.
    keys = zip(topo_map.nodes["episode_id"].to_pylist(), topo_map.nodes["t_ns"].to_pylist(), strict=True)
    first = list({key: i for i, key in reversed(list(enumerate(keys)))}.values())
    positions = se2.apply(world_from_map, base_poses(topo_map.nodes)[first, :2])
    rooms = Counter(room.name for xy in positions if (room := world.room_at(*xy)) is not None)
    return sorted(name for name, count in rooms.items() if count >= MIN_ROOM_KEYFRAMES)


def run_missions(
    world_dir: Path,
    topo_map: TopoMap,
    world_from_map: Pose2,
    missions: int,
    seed: int,
    config: MissionConfig = MissionConfig(),
    on_outcome: Any = None,
) -> list[MissionOutcome]:
    """`missions` sampled missions (sim.missions, among the rooms the map covers), each run to its end.

    Mission i's sensor noise is seeded with seed * 1000 + i; `on_outcome(index, mission, outcome)` sees each.
    """
    from sim.missions import sample_missions

    world = World.load(world_dir)
    runner = MissionRunner(world_dir, topo_map, world_from_map, config=config)
    sampled = sample_missions(world, missions, seed, rooms=mapped_rooms(world, topo_map, world_from_map))
    outcomes = []
    for index, mission in enumerate(sampled):
        outcomes.append(runner.run(mission, seed=seed * 1000 + index))
        if on_outcome is not None:
            on_outcome(index, mission, outcomes[-1])
    return outcomes
