"""Astra-Local's planner on the robot: the learned model behind the `LocalPlanner` interface, the classical planner
beside it as its fallback.

Each depth update, :meth:`AstraPlanner.observe` keeps the costmap as it stands; each cycle, the model sees the last F
of those frames `frame_period_s` apart, cropped around the robot as the training set crops them
(`models.astra_local.crops`), with the velocities and motions between them and the subgoal `goal_ahead_m` along the
route. It samples several trajectories and turns each into a command: its speed 0.5-0.75 s ahead, and the arc to its
first waypoint `pursuit_m` away. The command followed is that of the sample nearest the samples' mean among those that
pass the classical planner's checks, or where none does, of the one whose rollout comes least close to an obstacle
(`choose_safe`; without it, of the nearest sample whatever the checks say): the model proposes, and its own other
proposals are tried before anything is handed over. Where none passes, the model alone samples again guided off the
costmap's obstacles (`retry_guidance_m`), and where even the least close still runs into something, turns in place
as that sample turns rather than drive on. With the fallback the cycle is handed over at once: a second draw, and
the classical planner after it where that failed too, overran the loop's 100 ms (session 44). With `guidance_m`
> 0 the samples are pushed off the costmap's obstacles while they are drawn (models.astra_local.guidance). A planner
that attends to the 4D encoder's tokens (`voxel_tokens`) reads the cameras too: the navigator hands over each instant's
pictures and depth (`look`), shrunk as the training set stores them (models.astra_local.pictures), and each cycle the
encoder its checkpoint carries (`ENCODER_DIR`) lifts the same F frames, aligned by the filter's poses.

The classical planner takes the cycle (a hand-over, counted by reason) when:
- `warming_up`: there is not yet F frames' history;
- `unsure`: the samples disagree, their end points spread wider than `unsure_spread_m`;
- `unsafe`: no sample's command passes the checks the classical planner puts its own rollouts through (the static
  margin, the moving obstacles' predictions, a haven in reach);
- `arriving`: the final goal is nearer than `arriving_m`. The model learned from tours, which pass through and never
  stop at a goal; given one beside or behind it, it drove on past (session 29), so the classical planner docks;
- `stalled`: for `stalled_cycles` cycles after a recovery (the robot made no progress on the model's plans). The model
  sees no further than its crop: where the route bends round furniture it can circle short of it, safe and stuck,
  recovery after recovery (home-700's armchair, sessions 27-30), where the classical planner's A* guide sees the way.
Giving way (`evade`) is always the classical planner's. With `fallback=False` the model drives alone, for
evaluating it, and the hand-overs it would have made are still counted.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from models.astra_local.crops import codes_to_input, costmap_codes, crop_clearance
from models.astra_local.encoder4d import Encoder4D
from models.astra_local.pictures import as_batch, encoder_frames, picture_array, shrink_camera
from models.astra_local.planner import LocalPlannerModel
from models.costmap import LocalCostmap
from models.local_planner import (
    FULL_SPEED,
    CameraView,
    DwaPlanner,
    LocalPlan,
    LocalPlanner,
    LocalPlannerConfig,
    Pose,
    SpeedScale,
    Velocity,
)
from models.navigation import se2
from models.planning import ClearanceMap, resample
from models.tracking import NO_OBSTACLES, MovingObstacles
from schemas.local_dataset import LOCAL_GEOMETRY, LocalGeometry
from schemas.robot import MotionLimits
from schemas.world import GridSpec

HANDOVER_REASONS = ("warming_up", "unsure", "unsafe", "arriving", "stalled")
LOCAL_PLANNERS = ("classical", "astra")  # what `local` plans with: ASTRA_LOCAL
DEFAULT_WEIGHTS = Path(__file__).parents[1] / "weights" / "astra_local"  # one trained planner per folder
DEFAULT_VARIANT = "fm_esdf"
ENCODER_DIR = "encoder4d"  # inside a planner's checkpoint that reads the 4D encoder's tokens: the encoder it learned on


@dataclass(frozen=True)
class AstraPlannerConfig(LocalPlannerConfig):
    samples: int = 8
    unsure_spread_m: float = 0.6  # sampled end points farther than this from their mean: the model is unsure
    speed_waypoint: int = 3  # the command's speed: the trajectory's between this waypoint and the one before
    pursuit_m: float = 0.6  # and its turn: the arc to the first waypoint this far away (or the last)
    fallback: bool = True  # False: the model drives alone, and hand-overs are only counted
    choose_safe: bool = True  # follow the sample nearest the mean that passes the checks; False: the nearest one
    guidance_m: float = 0.0  # > 0: each refinement pushes waypoints off seen obstacles this far at most (README)
    retry_guidance_m: float = 0.3  # alone, where no sample passes, sample again guided this far (0: no retry; README)
    turn_in_place: bool = True  # alone, where every rollout runs into something: v = 0, the chosen sample's turn
    arriving_m: float = 1.5  # the final goal nearer than this along the way left: the classical planner docks
    stalled_cycles: int = 50  # after a recovery the classical planner drives this many cycles (5 s at 10 Hz)
    seed: int = 0  # of the sampling noise, so that runs repeat


@dataclass(frozen=True)
class _Snapshot:
    t_ns: int
    pose: Pose
    velocity: Velocity
    cells: np.ndarray
    spec: GridSpec


@dataclass(frozen=True)
class _Proposals:
    """One draw of the model's samples and the classical planner's verdict on each (`DwaPlanner.vet`)."""

    ego: np.ndarray  # (S, K, 3) trajectories in the robot's frame
    commands: np.ndarray  # (S, 2) v, w
    rollouts: np.ndarray  # (S, T, 3) the commands rolled out
    safe: np.ndarray  # (S,) passes the checks
    gap: np.ndarray  # (S,) the rollout's smallest gap to any obstacle, static or moving, in metres


@dataclass(frozen=True)
class _Pictures:
    """The cameras at one instant, at the stored size, in CAMERAS order."""

    rgb: np.ndarray  # uint8 [cams, 3, H, W]
    depth: np.ndarray  # float16 [cams, H, W], NaN invalid
    k: np.ndarray  # [cams, 3, 3]


@dataclass(frozen=True)
class PlannerObservation:
    """What the model saw in one cycle, laid out as a training window's inputs (schemas.local_dataset WINDOWS)."""

    frame_t_ns: tuple[int, ...]  # [F] the frames, oldest first
    occupancy: np.ndarray  # uint8 [F, G, G] FREE | OCCUPIED | UNKNOWN, cropped around the robot now
    velocity: np.ndarray  # [F, 2]
    motion: np.ndarray  # [F, 3]
    goal: np.ndarray  # [2] in the ego frame
    voxels: np.ndarray | None = None  # [V, C] the 4D encoder's tokens, for a planner that reads them

    def batch(self) -> dict[str, torch.Tensor]:
        """The model's input, a batch of one."""
        fields = {
            "occupancy": codes_to_input(self.occupancy),
            "velocity": self.velocity,
            "motion": self.motion,
            "goal": self.goal,
        } | ({} if self.voxels is None else {"voxels": self.voxels})
        return {name: torch.from_numpy(value)[None] for name, value in fields.items()}


class AstraPlanner(LocalPlanner):
    """The learned planner, with `fallback` (a DWA planner) for the cycles it hands over."""

    def __init__(
        self,
        model: LocalPlannerModel,
        config: AstraPlannerConfig = AstraPlannerConfig(),
        geometry: LocalGeometry = LOCAL_GEOMETRY,
        fallback: DwaPlanner | None = None,
        encoder: Encoder4D | None = None,
    ) -> None:
        super().__init__(config)
        if bool(model.config.voxel_tokens) != (encoder is not None):
            raise ValueError("a planner that reads the 4D encoder's tokens needs its encoder, and only it")
        self.config: AstraPlannerConfig = config
        self.model = model.eval()
        self.encoder = encoder.eval() if encoder is not None else None
        self.reads_cameras = encoder is not None
        self._pictures: dict[int, _Pictures] = {}
        self._lifted: dict[int, torch.Tensor] = {}  # each frame's cameras lifted by the encoder, once
        self.geometry = geometry
        self.fallback = fallback or DwaPlanner()
        self.handovers: Counter[str] = Counter()
        self.cycles = 0
        self.retries = 0  # cycles where the guided retry's samples were followed or handed over instead
        self.holds = 0  # cycles alone where every rollout ran into something, so the robot turned in place
        self._frames: deque[_Snapshot] = deque()
        self.last_observation: PlannerObservation | None = None  # the model's input in its latest cycle
        self._generator = torch.Generator().manual_seed(config.seed)
        self._stalled_left = 0  # cycles the classical planner still drives after a recovery

    def observe(self, t_ns: int, pose: Pose, velocity: Velocity, costmap: LocalCostmap) -> None:
        cells, spec = costmap.occupancy()
        self._frames.append(_Snapshot(t_ns, pose, velocity, cells, spec))
        keep_ns = (self.geometry.frames - 1) * self.geometry.frame_period_s * 1e9 + 1e9
        while t_ns - self._frames[0].t_ns > keep_ns:
            self._frames.popleft()
        self._pictures = {t: p for t, p in self._pictures.items() if t >= self._frames[0].t_ns}
        self._lifted = {t: m for t, m in self._lifted.items() if t in self._pictures}

    def look(self, t_ns: int, cameras: list[CameraView]) -> None:
        if self.reads_cameras:
            shrunk = [shrink_camera(view.picture.data, view.metres(), view.info, self.geometry) for view in cameras]
            self._pictures[t_ns] = _Pictures(
                np.stack([picture_array(c.jpeg) for c in shrunk]),
                np.stack([c.depth for c in shrunk]),
                np.asarray([c.k for c in shrunk], np.float32).reshape(-1, 3, 3),
            )

    def reset(self) -> None:
        self.fallback.reset()

    def stalled(self) -> None:
        self._stalled_left = self.config.stalled_cycles

    def evade(
        self,
        pose: Pose,
        velocity: Velocity,
        clearance: ClearanceMap,
        obstacles: MovingObstacles,
        remaining_m: float,
        speed_scale: SpeedScale = FULL_SPEED,
    ) -> LocalPlan:
        return self.fallback.evade(pose, velocity, clearance, obstacles, remaining_m, speed_scale)

    def plan(
        self,
        pose: Pose,
        velocity: Velocity,
        route: np.ndarray,
        final: bool,
        clearance: ClearanceMap,
        obstacles: MovingObstacles = NO_OBSTACLES,
        speed_scale: SpeedScale = FULL_SPEED,
    ) -> LocalPlan:
        c, g = self.config, self.geometry
        route = np.asarray(route, dtype=float).reshape(-1, 2)
        path, arc, s0, remaining = _along(route, np.asarray(pose[:2], dtype=float))
        if self.arrived(pose, route, final):
            return self.stop(pose, "arrived", clearance, remaining)
        self.cycles += 1
        frames = self._history()
        if frames is None:
            return self._hand_over("warming_up", pose, velocity, route, final, clearance, obstacles, speed_scale)

        arriving = final and remaining < c.arriving_m
        if arriving and c.fallback:
            return self._hand_over("arriving", pose, velocity, route, final, clearance, obstacles, speed_scale)
        stalled, self._stalled_left = self._stalled_left > 0, max(self._stalled_left - 1, 0)
        if stalled and c.fallback:
            return self._hand_over("stalled", pose, velocity, route, final, clearance, obstacles, speed_scale)
        goal_odom = _point_at(path, arc, s0 + g.goal_ahead_m)
        self.last_observation = self._observation(frames, pose, goal_odom)
        vet = partial(
            self.fallback.vet, pose, velocity, clearance=clearance, obstacles=obstacles, speed_scale=speed_scale
        )

        def seen() -> torch.Tensor:  # the costmap's ESDF at the crop's cells (1, G, G), for guidance
            return torch.from_numpy(crop_clearance(clearance, pose, g))[None]

        stop_within = remaining if final else math.inf
        proposals = self._propose(c.guidance_m, seen() if c.guidance_m > 0 else None, stop_within, vet)
        if not c.fallback and c.choose_safe and not proposals.safe.any() and c.retry_guidance_m > c.guidance_m:
            # None passes: the model's own samples pushed off what it sees, kept where they do better (session 43).
            retried = self._propose(c.retry_guidance_m, seen(), stop_within, vet)
            if retried.safe.any() or retried.gap.max() > proposals.gap.max():
                proposals = retried
                self.retries += 1
        ego, safe, gap = proposals.ego, proposals.safe, proposals.gap
        ends = ego[:, -1, :2]
        spread = float(np.hypot(*(ends - ends.mean(axis=0)).T).max())
        order = by_distance_to_mean(ego)
        if not c.choose_safe:
            chosen = int(order[0])
        elif safe.any():
            chosen = int(order[np.argmax(safe[order])])
        else:  # none passes: the one that comes least close (a creep into a wall, session 42)
            chosen = int(order[np.argmax(gap[order])])
        reason = "unsure" if spread > c.unsure_spread_m else "" if safe[chosen] else "unsafe"
        reason = "arriving" if arriving else "stalled" if stalled else reason
        if reason and c.fallback:
            return self._hand_over(reason, pose, velocity, route, final, clearance, obstacles, speed_scale)
        if reason:
            self.handovers[reason] += 1
        command, rollout = proposals.commands[chosen], proposals.rollouts[chosen]
        if not safe[chosen] and gap[chosen] < 0.0 and c.choose_safe and c.turn_in_place:
            # Every rollout runs into something: turn in place as the sample turns, not on into it (session 43).
            command = np.array([0.0, command[1]])
            rollout = vet(command[None])[0][0]
            self.holds += 1
        odom = np.stack([np.column_stack([se2.apply(pose, t[:, :2]), t[:, 2] + pose[2]]) for t in ego])
        min_clear = float(clearance.at(rollout[:, :2]).min())
        return LocalPlan(
            float(command[0]),
            float(command[1]),
            rollout,
            odom[:, :, :2],
            "ok",
            min_clear,
            remaining,
            path,
            np.zeros(len(odom)),
            chosen,
        )

    def _propose(
        self,
        guidance_m: float,
        esdf: torch.Tensor | None,
        remaining: float,
        vet: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> _Proposals:
        """The model's samples for this cycle's observation, guided off `esdf` (1, G, G) by up to `guidance_m` a
        refinement, each turned into a command that stops within `remaining`, and put through the checks by `vet`."""
        batch = self.last_observation.batch()
        ego = self.model.sample(batch, self.config.samples, self._generator, esdf, guidance_m)[0].numpy()
        commands = np.stack([self._command(t, remaining) for t in ego])
        return _Proposals(ego, commands, *vet(commands))

    def _hand_over(
        self,
        reason: str,
        pose: Pose,
        velocity: Velocity,
        route: np.ndarray,
        final: bool,
        clearance: ClearanceMap,
        obstacles: MovingObstacles,
        speed_scale: SpeedScale,
    ) -> LocalPlan:
        self.handovers[reason] += 1
        plan = self.fallback.plan(pose, velocity, route, final, clearance, obstacles, speed_scale)
        return replace(plan, handover=reason)

    def _history(self) -> list[_Snapshot] | None:
        """The newest frame and those `frame_period_s` apart before it, oldest first; None without enough history.
        A planner that reads the cameras sees only the frames whose pictures are in."""
        g = self.geometry
        frames = [f for f in self._frames if not self.reads_cameras or f.t_ns in self._pictures]
        if not frames:
            return None
        stamps = np.array([f.t_ns for f in frames])
        wanted = stamps[-1] - np.round(np.arange(g.frames - 1, -1, -1) * g.frame_period_s * 1e9).astype(np.int64)
        if wanted[0] < stamps[0] - 0.5 * g.frame_period_s * 1e9 and self.config.fallback:
            return None
        return [frames[int(np.argmin(np.abs(stamps - t)))] for t in wanted]

    def _voxels(self, frames: list[_Snapshot]) -> np.ndarray | None:
        """[V, C] the 4D encoder's tokens of `frames`' cameras, aligned to the newest by the filter's poses; None
        without an encoder."""
        if self.encoder is None:
            return None
        current = frames[-1].pose
        poses = np.asarray([se2.compose(se2.inverse(current), f.pose) for f in frames], np.float32)
        with torch.inference_mode():
            for f in frames:
                if f.t_ns not in self._lifted:
                    p = self._pictures[f.t_ns]
                    fields = as_batch(encoder_frames(p.rgb[None], p.depth[None], p.k, np.zeros((1, 3))))
                    self._lifted[f.t_ns] = self.encoder.lift(fields, slice(0, 1))[0][0, 0]
            lifted = torch.stack([self._lifted[f.t_ns] for f in frames])[None]
            return self.encoder.encode_lifted(lifted, torch.from_numpy(poses)[None])["tokens"][0].numpy()

    def _observation(self, frames: list[_Snapshot], pose: Pose, goal_odom: np.ndarray) -> PlannerObservation:
        g = self.geometry
        motion = [(0.0, 0.0, 0.0)] + [se2.compose(se2.inverse(a.pose), b.pose) for a, b in itertools.pairwise(frames)]
        return PlannerObservation(
            frame_t_ns=tuple(f.t_ns for f in frames),
            occupancy=np.stack([costmap_codes(f.cells, f.spec, pose, g) for f in frames]),
            velocity=np.asarray([f.velocity for f in frames], dtype=np.float32),
            motion=np.asarray(motion, dtype=np.float32),
            goal=se2.apply(se2.inverse(pose), goal_odom[None])[0].astype(np.float32),
            voxels=self._voxels(frames),
        )

    def _command(self, trajectory: np.ndarray, remaining: float) -> np.ndarray:
        """(v, w) that follows the trajectory: its speed at `speed_waypoint`, and the arc to its first waypoint
        `pursuit_m` away (pure pursuit: a nearer point's direction is mostly the samples' noise)."""
        c, limits = self.config, self.config.limits
        period = self.geometry.waypoint_period_s
        points = np.vstack([[0.0, 0.0], trajectory[:, :2]])
        k = min(c.speed_waypoint, len(trajectory))
        speed = float(np.hypot(*(points[k] - points[k - 1]))) / period
        distance = np.hypot(points[1:, 0], points[1:, 1])
        ahead = int(np.argmax(distance >= c.pursuit_m)) if (distance >= c.pursuit_m).any() else len(distance) - 1
        dx, dy = points[ahead + 1]
        if distance[ahead] < c.goal_tolerance / 2:  # the model stays: turn to its final heading
            return np.array([0.0, float(np.clip(trajectory[-1, 2] / self.geometry.horizon_s, *_rates(limits)))])
        if dx <= 0.0:  # behind: turn toward it first
            return np.array([0.0, float(np.clip(math.atan2(dy, dx), *_rates(limits)))])
        curvature = 2 * dy / distance[ahead] ** 2
        cap = math.sqrt(2 * c.goal_decel * max(remaining - c.goal_tolerance / 2, 0.0))
        v = float(np.clip(speed, 0.0, min(limits.max_speed, max(cap, 0.1))))
        return np.array([v, float(np.clip(v * curvature, *_rates(limits)))])


def by_distance_to_mean(samples: np.ndarray) -> np.ndarray:
    """The sampled trajectories [S, K, 3] in order of their distance, waypoint by waypoint, to the samples' mean,
    nearest first: trajectories the model gave, where the mean of a two-way split might run between two ways round
    an obstacle."""
    offsets = samples[:, :, :2] - samples[:, :, :2].mean(axis=0)
    return np.argsort(np.hypot(offsets[..., 0], offsets[..., 1]).sum(axis=1), kind="stable")


def _rates(limits: MotionLimits) -> tuple[float, float]:
    return -limits.max_yaw_rate, limits.max_yaw_rate


def _along(route: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The route as a dense path from the robot's side (P, 2), its arc length, the robot's place on it, and the
    distance still to go: from the robot to that place, then along the route."""
    path = resample(np.vstack([xy, route]) if len(route) == 1 else route, 0.1)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(path, axis=0).T))])
    offsets = np.hypot(*(path - xy).T)
    nearest = int(np.argmin(offsets))
    return path, arc, float(arc[nearest]), float(offsets[nearest] + arc[-1] - arc[nearest])


def _point_at(path: np.ndarray, arc: np.ndarray, s: float) -> np.ndarray:
    return np.array([np.interp(s, arc, path[:, 0]), np.interp(s, arc, path[:, 1])])


def astra_planner(checkpoint: Path, config: AstraPlannerConfig = AstraPlannerConfig()) -> AstraPlanner:
    """The learned planner of a checkpoint folder, with the 4D encoder it carries if it reads the encoder's tokens."""
    model = LocalPlannerModel.from_pretrained(checkpoint)
    encoder = Encoder4D.from_pretrained(Path(checkpoint) / ENCODER_DIR) if model.config.voxel_tokens else None
    return AstraPlanner(model, config, model.config.geometry, encoder=encoder)


def local_planner(mode: str = "classical", checkpoint: Path = DEFAULT_WEIGHTS / DEFAULT_VARIANT) -> LocalPlanner:
    """The planner `local` runs: the classical DWA, or Astra-Local's (the committed default) with it as fallback."""
    if mode not in LOCAL_PLANNERS:
        raise ValueError(f"unknown local planner {mode!r}; choose one of {', '.join(LOCAL_PLANNERS)}")
    if mode == "classical":
        return DwaPlanner()
    return astra_planner(checkpoint)
