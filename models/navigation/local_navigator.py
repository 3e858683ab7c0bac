"""The core of the `local` node: fused odometry, the local costmap, and a safe command toward the next subgoal.

Inputs arrive as messages, outputs leave as (dora output id, message), with no I/O and no clock of its own:
every time is the robot's, from message stamps, so the dora node and the in-process evaluation run the same
logic. Odometry runs on every IMU and wheel sample; the costmap and the tracks of moving obstacles update when
all cameras' depth of one stamp is in; `plan(now_ns)` runs the planner and the recoveries (the caller calls it at
`plan_hz`). People and carts do not avoid the robot, so it gives way to them at all times: also with nowhere to
go (waiting to localize, arrived, route blocked) and during recoveries.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from models.costmap import CostmapConfig, LocalCostmap, cluster_discs
from models.local_planner import CameraView, DwaPlanner, LocalPlan, LocalPlanner, SpeedScale
from models.navigation import se2
from models.odometry import WheelImuOdometry
from models.recovery import RecoveryManager
from models.safety import SafetyLimits, nearest_obstacle_m, people_speed_scale
from models.tracking import MovingObstacles, ObstacleTracker
from schemas.messages import (
    CameraInfo,
    CandidatePaths,
    CompressedImage,
    DepthImage,
    DynamicObstacles,
    Event,
    Imu,
    MissionStatus,
    OccupancyGrid,
    Odometry,
    Path,
    TFMessage,
    Transform,
    Twist,
    WheelState,
)
from schemas.robot import DEFAULT_ROBOT, RobotConfig
from schemas.topics import BASE_FRAME, CAMERAS, ODOM_FRAME, camera_frame

Output = tuple[str, object]


@dataclass(frozen=True)
class LocalParams:
    plan_hz: float = 10.0
    costmap_hz: float = 2.0  # how often the costmap is published (it updates with every depth frame)
    subgoal_passed_m: float = 0.8  # a subgoal this close counts as passed
    relocalize_after_recovery: bool = True
    # Lost (global still localizing) this long: drive a short leg to a new viewpoint, for a view the map knows.
    explore_after_s: float = 4.0
    explore_step_m: float = 1.5
    explore_clearance_m: float = 0.45  # the leg keeps this far from what the costmap has seen
    track_min_speed: float = 0.2  # m/s: slower tracks are left to the ESDF, where their cells are
    # Give way when a track, if the robot stood still, would pass within this gap (edge to edge) this soon.
    yield_gap_m: float = 0.5
    yield_horizon_s: float = 3.0


class LocalNavigator:
    """Odometry, costmap, planner and recoveries of the `local` node."""

    def __init__(
        self,
        robot: RobotConfig = DEFAULT_ROBOT,
        params: LocalParams = LocalParams(),
        planner: LocalPlanner | None = None,
        costmap: CostmapConfig | None = None,
        safety: SafetyLimits | None = None,
    ) -> None:
        self.robot = robot
        self.params = params
        self.safety = safety or SafetyLimits()  # the actuation layer's: the planner plans with the speeds it will leave
        self.odometry = WheelImuOdometry(robot)
        self.costmap = LocalCostmap(costmap or CostmapConfig(), robot)
        self.planner = planner or DwaPlanner()
        self.recovery = RecoveryManager()
        self.tracker = ObstacleTracker()
        self._depths: dict[str, tuple[DepthImage, CameraInfo]] = {}
        # For a planner that reads the cameras: per stamp, each camera's picture and depth until all are in.
        self._views: dict[int, dict[str, dict[str, object]]] = {}
        self._infos: dict[str, CameraInfo] = {}
        self._cameras = {camera_frame(c): c for c in robot.cameras}
        self._subgoals: np.ndarray | None = None  # (P, 2) in odom, the last one the goal
        self._localizing_since: int | None = None  # while global has a goal but no fix yet
        self._explore: np.ndarray | None = None  # (1, 2) the viewpoint being driven to while lost
        self._arrived = False
        self._last_costmap_ns: int | None = None
        self.plan_seconds: list[float] = []  # wall time of each plan(), for the loop's p99
        self._window: list[float] = []  # the same, since the last loop_stats
        self._cycles = 0  # plan() calls since the last loop_stats, idle ones (nowhere to go) included
        self.last_plan: LocalPlan | None = None

    # Inputs.

    def on_imu(self, msg: Imu) -> None:
        self.odometry.on_imu(msg)

    def on_wheels(self, msg: WheelState) -> list[Output]:
        self.odometry.on_wheels(msg)
        x, y, yaw = self.odometry.pose()
        v, w = self.odometry.velocity()
        quat = se2.yaw_quat(yaw)
        odom = Odometry(msg.t_ns, ODOM_FRAME, BASE_FRAME, (x, y, 0.0), quat, (v, 0.0, 0.0), (0.0, 0.0, w))
        tf = TFMessage(msg.t_ns, (Transform(msg.t_ns, ODOM_FRAME, BASE_FRAME, (x, y, 0.0), quat),))
        return [("local_odom", odom), ("odom_tf", tf)]

    def on_camera_info(self, msg: CameraInfo) -> None:
        self._infos[msg.frame_id] = msg

    def on_depth(self, msg: DepthImage) -> list[Output]:
        info = self._infos.get(msg.frame_id)
        if info is None or msg.frame_id not in self._cameras:
            return []
        self._depths[msg.frame_id] = (msg, info)
        self._view(msg.t_ns, msg.frame_id, depth=msg, info=info)
        if len(self._depths) < len(self._cameras) or len({d.t_ns for d, _ in self._depths.values()}) > 1:
            return []
        depths, self._depths = list(self._depths.values()), {}
        self.costmap.update(msg.t_ns, self.odometry.pose(), depths)
        self.planner.observe(msg.t_ns, self.odometry.pose(), self.odometry.velocity(), self.costmap)
        # Only the cells hit in this frame: where the bodies are now, not where they were.
        clusters = self.costmap.moving_clusters(max_age_s=1e-3)
        centres, radii = cluster_discs(clusters, self.costmap.config.resolution)
        self.tracker.update(msg.t_ns * 1e-9, centres, radii, clusters)
        outputs: list[Output] = [("moving_obstacles", self._moving(msg.t_ns))]
        if self._last_costmap_ns is None or msg.t_ns - self._last_costmap_ns >= 1e9 / self.params.costmap_hz:
            self._last_costmap_ns = msg.t_ns
            outputs.append(("local_costmap", self._grid(msg.t_ns)))
        return outputs

    def on_image(self, msg: CompressedImage) -> None:
        if msg.frame_id in self._cameras:
            self._view(msg.t_ns, msg.frame_id, picture=msg)

    def _view(self, t_ns: int, frame_id: str, **parts: object) -> None:
        """Gather a camera's picture and depth of one stamp, whichever comes first, for a planner that reads the
        cameras; once every camera's are in, hand them over, and forget older stamps still missing some."""
        if not self.planner.reads_cameras:
            return
        self._views = {t: v for t, v in self._views.items() if t > t_ns - 2_000_000_000}
        self._views.setdefault(t_ns, {}).setdefault(frame_id, {}).update(parts)
        views = self._views[t_ns]
        if len(views) == len(self._cameras) and all(len(v) == 3 for v in views.values()):
            self.planner.look(t_ns, [CameraView(**views[camera_frame(c)]) for c in CAMERAS])
            self._views = {t: v for t, v in self._views.items() if t > t_ns}

    def on_sensor(self, output_id: str, msg: object) -> list[Output]:
        """Route one sensor message by its output id (imu, wheels, camera_info_*, depth_*, image_*); others are not
        local's."""
        if output_id == "imu":
            self.on_imu(msg)
        elif output_id == "wheels":
            return self.on_wheels(msg)
        elif output_id.startswith("camera_info_"):
            self.on_camera_info(msg)
        elif output_id.startswith("depth_"):
            return self.on_depth(msg)
        elif output_id.startswith("image_"):
            self.on_image(msg)
        return []

    def on_subgoals(self, msg: Path) -> None:
        self._subgoals = np.column_stack([msg.x, msg.y]) if msg.x else None
        self._explore = None
        self._arrived = False
        self.recovery.reset()
        self.planner.reset()

    def on_mission_status(self, msg: MissionStatus) -> None:
        """Global's mission state: while it is still localizing, the robot looks for a view it can localize from."""
        if msg.state != "localizing":
            self._localizing_since = None
        elif self._localizing_since is None:
            self._localizing_since = msg.t_ns

    @property
    def driving(self) -> bool:
        """Whether the planner has somewhere to go: a route, or a viewpoint while lost."""
        return (self._subgoals is not None and not self._arrived) or self._explore is not None

    # Planning.

    def plan(self, now_ns: int) -> list[Output]:
        """One planning cycle: a command (zero with nowhere to go and no one to give way to), the chosen
        trajectory and any events."""
        self._cycles += 1
        route = self._subgoals if self._subgoals is not None else self._exploration(now_ns)
        idle = route is None or self._arrived
        obstacles = self.tracker.obstacles(self.params.track_min_speed)
        if self.odometry.t_ns is None or (idle and not self._threatened(obstacles)):
            return [("local_cmd", Twist(now_ns, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))]
        started = time.perf_counter()
        pose = self.odometry.pose()
        velocity = self.odometry.velocity()
        clearance = self.costmap.clearance()
        speed_scale = self._speed_scale(now_ns)
        if idle:
            plan = self.planner.evade(pose, velocity, clearance, obstacles, 0.0, speed_scale)
        else:
            if self._subgoals is not None:
                self._drop_passed(pose)
                route = self._subgoals
            plan = self.planner.plan(pose, velocity, route, True, clearance, obstacles, speed_scale)
        outputs: list[Output] = []
        if plan.handover and (self.last_plan is None or plan.handover != self.last_plan.handover):
            outputs.append(("nav_events", Event(now_ns, "handover", "local", plan.handover, 0.0)))
        self.last_plan = plan
        v, w = plan.v, plan.w
        if idle or plan.status == "yield":
            self.recovery.hold(now_ns, plan.remaining_m)  # giving way is no lack of progress
        elif self._subgoals is None:
            if plan.status != "ok":  # at the viewpoint, or it cannot be reached: wait, then try elsewhere
                self._explore, self._localizing_since = None, now_ns
        elif plan.status == "arrived":
            self._arrived = True
            outputs.append(("nav_events", Event(now_ns, "goal_reached", "local", "", 0.0)))
        else:
            recovery = self.recovery.update(now_ns, pose, plan, plan.remaining_m, clearance)
            outputs += self._recovery_events()
            if recovery is not None and self._threatened(obstacles):
                # A back-up, spin or wait for a reroute is no place to stand in someone's way.
                plan = self.planner.evade(pose, velocity, clearance, obstacles, plan.remaining_m, speed_scale)
                self.last_plan = plan
                v, w = plan.v, plan.w
                self.recovery.hold(now_ns, plan.remaining_m)
            elif recovery is not None:
                v, w = recovery.v, recovery.w
                if recovery.behaviour == "replan":
                    self.planner.reset()
                    self.planner.stalled()
        elapsed = time.perf_counter() - started
        self.plan_seconds.append(elapsed)
        self._window.append(elapsed)
        traj = plan.trajectory
        outputs.append(("local_cmd", Twist(now_ns, (v, 0.0, 0.0), (0.0, 0.0, w))))
        outputs.append(("plan", Path(now_ns, ODOM_FRAME, tuple(traj[:, 0]), tuple(traj[:, 1]), tuple(traj[:, 2]))))
        outputs.append(("local_candidates", _candidate_paths(now_ns, plan)))
        return outputs

    def _speed_scale(self, t_ns: int) -> SpeedScale:
        """What the safety layer will leave of a forward and a backward command near the people it is sent."""
        people = self._moving(t_ns)
        return (
            people_speed_scale(self.safety, nearest_obstacle_m(self.safety, people, 1.0)),
            people_speed_scale(self.safety, nearest_obstacle_m(self.safety, people, -1.0)),
        )

    def _threatened(self, obstacles: MovingObstacles) -> bool:
        """Whether a moving obstacle would pass within `yield_gap_m` of the robot standing still, soon."""
        if not len(obstacles) or self.odometry.t_ns is None:
            return False
        t, gap = obstacles.closest_approach(np.asarray(self.odometry.pose()[:2]))
        soon = (t <= self.params.yield_horizon_s) & (gap - self.robot.radius < self.params.yield_gap_m)
        return bool(soon.any())

    def _exploration(self, now_ns: int) -> np.ndarray | None:
        """The viewpoint to drive to while lost, as a one-point route in odom; None while waiting."""
        p = self.params
        if self._localizing_since is None or now_ns - self._localizing_since < p.explore_after_s * 1e9:
            return None
        if self._explore is None:
            x, y, yaw = self.odometry.pose()
            headings = yaw + np.linspace(-np.pi, np.pi, 16, endpoint=False)
            steps = np.linspace(0.2, p.explore_step_m, 8)
            rays = np.stack([x + np.cos(headings)[:, None] * steps, y + np.sin(headings)[:, None] * steps], axis=-1)
            free = self.costmap.clearance().at(rays) >= p.explore_clearance_m
            reach = np.where(free.all(axis=1), steps[-1], steps[np.argmin(free, axis=1)] - steps[0])
            # The longest free leg; among equals, the most ahead, where the robot has not just come from.
            best = int(np.argmax(reach + 0.01 * np.cos(headings - yaw)))
            if reach[best] < steps[1]:
                return None
            self._explore = np.array(
                [[x + np.cos(headings[best]) * reach[best], y + np.sin(headings[best]) * reach[best]]]
            )
        return self._explore

    def loop_stats(self, t_ns: int, window_s: float) -> Event:
        """The planner's rate and compute time over the plans since the last call, as a `loop_stats` event."""
        seconds, self._window = np.array(self._window), []
        cycles, self._cycles = self._cycles, 0
        p50, p99 = np.percentile(seconds * 1e3, [50, 99]) if len(seconds) else (0.0, 0.0)
        detail = f"plans={len(seconds)} hz={cycles / window_s:.2f} p50_ms={p50:.2f} p99_ms={p99:.2f}"
        return Event(t_ns, "loop_stats", "local", detail, float(p99))

    def _recovery_events(self) -> list[Output]:
        """Each recovery as an event; replans and blocked routes also ask global to relocalize or reroute."""
        outputs: list[Output] = []
        for event in self.recovery.events:
            detail = event.detail
            kind = "recovery"
            if event.name == "route_blocked" and self.recovery.blocked_at is not None:
                kind, detail = "route_blocked", ",".join(f"{v:.3f}" for v in self.recovery.blocked_at[:2])
            outputs.append(("nav_events", Event(event.t_ns, kind, "local", f"{event.name}: {detail}", 0.0)))
            if event.name == "replan" and self.params.relocalize_after_recovery:
                outputs.append(("nav_events", Event(event.t_ns, "relocalize_request", "local", "after recovery", 0.0)))
        self.recovery.events.clear()
        return outputs

    def _drop_passed(self, pose: se2.Pose2) -> None:
        subgoals = self._subgoals
        while len(subgoals) > 1 and math.hypot(subgoals[0, 0] - pose[0], subgoals[0, 1] - pose[1]) < (
            self.params.subgoal_passed_m
        ):
            subgoals = subgoals[1:]
        self._subgoals = subgoals

    # Messages.

    def _grid(self, t_ns: int) -> OccupancyGrid:
        cells, spec = self.costmap.occupancy()
        rows, cols = cells.shape
        origin = (spec.origin[0], spec.origin[1], 0.0)
        return OccupancyGrid(t_ns, ODOM_FRAME, spec.resolution, cols, rows, origin, cells.astype(np.int8).tobytes())

    def _moving(self, t_ns: int) -> DynamicObstacles:
        centres, _ = self.costmap.moving_obstacles()
        in_base = se2.apply(se2.inverse(self.odometry.pose()), centres) if len(centres) else np.zeros((0, 2))
        n = len(in_base)
        return DynamicObstacles(
            t_ns,
            tuple(f"moving_{i}" for i in range(n)),
            tuple(in_base[:, 0].tolist()),
            tuple(in_base[:, 1].tolist()),
            (0.0,) * n,
            (0.0,) * n,
            (self.costmap.config.resolution,) * n,
        )


def _candidate_paths(now_ns: int, plan: LocalPlan) -> CandidatePaths:
    """The rollouts the planner weighed this cycle, flattened for the message."""
    points = plan.candidates.reshape(-1, 2)
    lengths = (plan.candidates.shape[1],) * len(plan.candidates)
    return CandidatePaths(
        now_ns,
        ODOM_FRAME,
        tuple(points[:, 0].tolist()),
        tuple(points[:, 1].tolist()),
        lengths,
        tuple(plan.candidate_costs.tolist()),
        plan.chosen,
    )
