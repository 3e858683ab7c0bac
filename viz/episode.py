"""Log a robot episode to Rerun, and the blueprint that lays it out.

Entities follow the REP-105 tf tree: `map`, `map/odom` (map -> odom from /tf, or from localization's
`map_odom` in a navigation run), `map/odom/base_link` (odom -> base_link from /tf, or from the fused
`local_odom` in a navigation run, whose odom frame map -> odom refers to) and each sensor frame under
base_link (from /tf_static), its camera picture on `<frame>/image`. Everything is drawn in the frame
its message is in, so the viewer places it with the transforms of the time shown:
- `map`: the building, the map graph (given a map), ground truth, the estimate (fused `local_odom` through
  the latest map -> odom), relocalization fixes, the route and the goal;
- `map/odom`: wheel odometry (lying on the ground truth up to drift), the local costmap's occupied cells, the
  subgoals, the local planner's `plan` and the candidates it weighed (thin, lighter the cheaper; the chosen one
  highlighted);
- `map/odom/base_link`: the robot and the obstacles it perceives moving.
The local costmap and its ESDF are also images under `local_costmap`, north up, with the plan, candidates,
subgoals and robot drawn over them in pixels; events, fixes and mission states are text logs under `events`.

Pure over a `rerun.RecordingStream`, so the dora `viz` node, replay tools and tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rerun as rr
import rerun.blueprint as rrb
from scipy.spatial.transform import Rotation

from datasets.map_store import TopoMap
from models.costmap import FREE, OCCUPIED, UNKNOWN
from models.navigation.se2 import Pose2
from models.planning import ClearanceMap
from schemas import messages as m
from schemas.robot import DEFAULT_ROBOT
from schemas.topics import BASE_FRAME, BY_OUTPUT, CAMERAS, MAP_FRAME, ODOM_FRAME, camera_frame
from schemas.world import GridSpec, World
from viz.map import log_graph, log_world

APPLICATION_ID = "astra"  # a blueprint applies to the recordings of its application
TIMELINE = "robot_time"
TRAJECTORY_EVERY = 10  # re-log the trajectory line every N poses: a full strip per pose is quadratic
FRAME_PATHS = {MAP_FRAME: "map", ODOM_FRAME: "map/odom", BASE_FRAME: "map/odom/base_link"}
COMMANDS = {
    "expert_cmd_vel": ("expert, before safety", [230, 160, 30]),
    "local_cmd": ("local planner, before safety", [200, 80, 200]),
    "cmd_vel": ("after safety", [40, 120, 220]),
}
AXES = (["x", "y", "z"], [[220, 60, 60], [60, 180, 60], [60, 100, 220]])
# Trails: the truth, wheel odometry (in odom) and the navigation estimate (local_odom placed in map).
COLORS = {"ground_truth": [40, 200, 80], "odom": [200, 80, 200], "local_odom": [240, 130, 20]}
NAV_COLORS = {"route": [255, 0, 0], "goal": [255, 0, 0], "subgoals": [230, 160, 30], "plan": [40, 120, 220]}
# DynamicObstacles carry no frame: the simulator's truth is in map, what the robot perceives in base_link.
OBSTACLE_FRAMES = {"obstacles": MAP_FRAME, "moving_obstacles": BASE_FRAME}
# The simulator calls its world `map`; a navigation run's map is the mapping tour's odometry frame, which lies off
# the world by that tour's start and drift. Given the offset, the building and the truth are drawn under this entity.
WORLD_ENTITY = "map/world"
TRUTH_OUTPUTS = frozenset({"ground_truth", "obstacles"})  # published by the simulator, in its world frame
OBSTACLE_COLORS = {"obstacles": [220, 40, 40], "moving_obstacles": [255, 120, 180]}
# Fixes go from red (confidence 0) to green (1); failed ones are grey.
FIX_COLORS = (np.array([220, 40, 40]), np.array([40, 200, 80]))
FAILED_FIX_COLOR = [120, 120, 120]
# Text log levels by event kind (INFO otherwise); loop statistics are periodic, hidden unless asked for.
EVENT_LEVELS = {
    **dict.fromkeys(
        (
            "collision",
            "estop",
            "watchdog_stop",
            "relocalize_request",
            "recovery",
            "route_blocked",
            "localization_fallback",
            "localization_lost",
        ),
        rr.TextLogLevel.WARN,
    ),
    "loop_stats": rr.TextLogLevel.DEBUG,
}
MISSION_LEVELS = {
    "recovering": rr.TextLogLevel.WARN,
    "goal_not_found": rr.TextLogLevel.ERROR,
    "failed": rr.TextLogLevel.ERROR,
}
# Costmap cells as classes of a segmentation image: a class id is unsigned, so each cell value is shifted by 1.
COSTMAP_CLASSES = (
    (UNKNOWN, "unknown", [60, 60, 70]),
    (FREE, "free", [235, 235, 235]),
    (OCCUPIED, "occupied", [20, 20, 20]),
)
# Candidate trajectories: grey from the dearest to the cheapest, darker where rejected; the chosen one stands out.
CANDIDATE_GREYS = (np.array([90, 90, 90]), np.array([235, 235, 235]))
REJECTED_CANDIDATE_COLOR = [50, 50, 50]
CHOSEN_CANDIDATE_COLOR = [255, 200, 0]
CANDIDATE_RADII = {False: 0.005, True: 0.02}  # m, by whether chosen
PATH_Z = 0.05  # paths and cells just above the floor, where walls and the robot do not hide them
IMAGE_PLANE_M = 0.3  # frustum depth in the map view: small beside the rooms
GOAL_ARROW_M = 0.6


def frame_path(frame: str) -> str:
    """The entity of a tf frame; sensor frames hang off base_link, as every /tf_static transform we publish."""
    return FRAME_PATHS.get(frame, f"{FRAME_PATHS[BASE_FRAME]}/{frame}")


def trajectory_path(output_id: str, frame: str) -> str:
    """Where an odometry topic's trail is drawn: under the frame its poses are given in."""
    return f"{frame_path(frame)}/trajectory/{output_id}"


def image_path(frame: str) -> str:
    return f"{frame_path(frame)}/image"


def costmap_image_path(layer: str) -> str:
    """Where a layer over the local costmap lives: "occupancy", "esdf", or an overlay such as "plan"."""
    return f"local_costmap/{layer}"


def candidate_colors(costs: tuple[float, ...]) -> np.ndarray:
    """(N, 3) colours: grey, lighter the cheaper among the finite costs; rejected (infinite) ones darkest."""
    costs = np.asarray(costs, dtype=float)
    finite = np.isfinite(costs)
    cheapness = np.ones(len(costs))
    if finite.any() and np.ptp(costs[finite]) > 0:
        cheapness[finite] = (costs[finite].max() - costs[finite]) / np.ptp(costs[finite])
    dear, cheap = CANDIDATE_GREYS
    colors = dear + cheapness[:, None] * (cheap - dear)
    colors[~finite] = REJECTED_CANDIDATE_COLOR
    return colors.round().astype(np.uint8)


def _set_time(rec: rr.RecordingStream, t_ns: int) -> None:
    rec.set_time(TIMELINE, timestamp=np.datetime64(int(t_ns), "ns"))


def episode_blueprint(world: World) -> rrb.Blueprint:
    """A large top-down map with the robot, trajectories and navigation; beside it the local costmap and its
    ESDF, plots of commands and IMU, and the events; the cameras in a row below."""
    boxes = np.array([[*w.box.center, *w.box.half_size] for w in world.walls])
    low, high = (boxes[:, :2] - boxes[:, 3:5]).min(axis=0), (boxes[:, :2] + boxes[:, 3:5]).max(axis=0)
    (cx, cy), height = (low + high) / 2, 1.1 * float((high - low).max())
    map_view = rrb.Spatial3DView(
        origin="map",
        contents=["+ $origin/**", *(f"- {image_path(camera_frame(c))}/depth" for c in CAMERAS)],  # no point clouds
        name="Map",
        # Looking down from just south of the centre: top-down, with the orbit still upright.
        eye_controls=rrb.EyeControls3D(position=(cx, cy - 0.15 * height, height), look_target=(cx, cy, 0.0)),
    )
    overlays = f"{costmap_image_path('overlay')}/**"
    costmap = rrb.Horizontal(
        rrb.Spatial2DView(
            origin="local_costmap", contents=[costmap_image_path("occupancy"), overlays], name="Local costmap"
        ),
        rrb.Spatial2DView(origin="local_costmap", contents=[costmap_image_path("esdf"), overlays], name="ESDF (m)"),
    )
    plots = rrb.Tabs(
        rrb.TimeSeriesView(origin="commands/linear", name="Speed command (m/s)"),
        rrb.TimeSeriesView(origin="commands/angular", name="Yaw rate command (rad/s)"),
        rrb.TimeSeriesView(origin="imu/linear_acceleration", name="IMU acceleration (m/s²)"),
        rrb.TimeSeriesView(origin="imu/angular_velocity", name="IMU angular velocity (rad/s)"),
    )
    side = rrb.Vertical(costmap, plots, rrb.TextLogView(origin="events", name="Events"), row_shares=[2, 1, 1])
    cameras = [rrb.Spatial2DView(origin=image_path(camera_frame(c)), contents="$origin", name=c) for c in CAMERAS]
    depth = rrb.Spatial2DView(
        origin=image_path(camera_frame("front")), contents="$origin/depth", name="front depth (m)"
    )
    return rrb.Blueprint(
        rrb.Vertical(
            rrb.Horizontal(map_view, side, column_shares=[3, 2]),
            rrb.Horizontal(*cameras, depth),
            row_shares=[3, 1],
        ),
        rrb.BlueprintPanel(state="collapsed"),
        rrb.SelectionPanel(state="collapsed"),
    )


def episode_recording(
    world: World,
    recording_id: str,
    rrd: Path | None,
    topo: TopoMap | None = None,
    map_from_world: Pose2 | None = None,
) -> rr.RecordingStream:
    """A stream saving to `rrd` (else to a spawned viewer) with the episode blueprint, the building logged and,
    given the map the robot navigates by, its graph. Given where the simulator's world lies in that map, the
    building is drawn there (`WORLD_ENTITY`), as EpisodeLogger then draws the truth."""
    rec = rr.RecordingStream(APPLICATION_ID, recording_id=recording_id)
    blueprint = episode_blueprint(world)
    if rrd is None:
        rec.spawn(default_blueprint=blueprint)
    else:
        rrd.parent.mkdir(parents=True, exist_ok=True)
        rec.save(rrd, default_blueprint=blueprint)
    if map_from_world is not None:
        x, y, yaw = map_from_world
        placement = rr.RotationAxisAngle(axis=(0, 0, 1), radians=yaw)
        rec.log(WORLD_ENTITY, rr.Transform3D(translation=(x, y, 0.0), rotation=placement), static=True)
    log_world(rec, world, _world_root(map_from_world))
    if topo is not None:
        log_graph(rec, topo)
    return rec


def _world_root(map_from_world: Pose2 | None) -> str:
    """The entity the simulator's world frame is drawn as: `map` itself, or `WORLD_ENTITY` placed in the map."""
    return FRAME_PATHS[MAP_FRAME] if map_from_world is None else WORLD_ENTITY


def save_episode_blueprint(world: World, path: Path) -> None:
    """The episode layout as a blueprint file (.rbl), which the viewer applies to any episode of this building."""
    path.parent.mkdir(parents=True, exist_ok=True)
    episode_blueprint(world).save(APPLICATION_ID, path)


@dataclass(frozen=True)
class _Fix:
    position: tuple[float, float, float]
    confidence: float
    label: str


class EpisodeLogger:
    """Turns our messages into Rerun entities (see the module docstring)."""

    def __init__(self, rec: rr.RecordingStream, map_from_world: Pose2 | None = None) -> None:
        self.rec = rec
        self._truth_root = _world_root(map_from_world)  # where the simulator's truth is drawn
        self._trajectories: dict[str, list[tuple[float, float, float]]] = {name: [] for name in COLORS}
        self._map_from_odom: tuple[Rotation, np.ndarray] | None = None  # the latest map -> odom
        self._fused_odometry = False  # whether local_odom has begun placing base_link
        self._fixes: dict[bool, list[_Fix]] = {True: [], False: []}  # by success
        self._grid: GridSpec | None = None  # the latest local costmap's, for the overlays drawn in its pixels
        robot = DEFAULT_ROBOT
        base = FRAME_PATHS[BASE_FRAME]
        rec.log(
            f"{base}/body",
            rr.Cylinders3D(lengths=[robot.shell_top], radii=[robot.radius], centers=[(0.0, 0.0, robot.shell_top / 2)]),
            static=True,
        )
        rec.log(
            f"{base}/heading",
            rr.Arrows3D(vectors=[(2 * robot.radius, 0.0, 0.0)], origins=[(0.0, 0.0, robot.shell_top)]),
            static=True,
        )
        for kind in ("linear", "angular"):
            for output_id, (name, color) in COMMANDS.items():
                rec.log(f"commands/{kind}/{output_id}", rr.SeriesLines(names=name, colors=color), static=True)
        for quantity in ("linear_acceleration", "angular_velocity"):
            rec.log(f"imu/{quantity}", rr.SeriesLines(names=AXES[0], colors=AXES[1]), static=True)
        classes = [rr.AnnotationInfo(id=value + 1, label=label, color=color) for value, label, color in COSTMAP_CLASSES]
        rec.log(costmap_image_path("occupancy"), rr.AnnotationContext(classes), static=True)

    def log(self, output_id: str, msg: object) -> None:
        """Log one message of the output `output_id` (schemas.topics) at its stamp."""
        if output_id not in BY_OUTPUT:
            raise KeyError(f"unknown output {output_id!r}")
        rec = self.rec
        _set_time(rec, msg.t_ns)
        match msg:
            case m.Odometry():
                self._log_odometry(output_id, msg)
            case m.TFMessage():
                for tf in msg.transforms:
                    if tf.child_frame_id == BASE_FRAME and self._fused_odometry:
                        continue  # a navigation run's odom is the fused odometry's, not the wheels' on /tf
                    rec.log(
                        frame_path(tf.child_frame_id),
                        rr.Transform3D(translation=tf.translation, quaternion=tf.rotation),
                        static=output_id == "tf_static",
                    )
                    if (tf.parent_frame_id, tf.child_frame_id) == (MAP_FRAME, ODOM_FRAME):
                        self._map_from_odom = Rotation.from_quat(tf.rotation), np.array(tf.translation)
            case m.CompressedImage():
                rec.log(image_path(msg.frame_id), rr.EncodedImage(contents=msg.data, media_type=f"image/{msg.format}"))
            case m.DepthImage():
                depth = np.frombuffer(msg.data, dtype="<f4").reshape(msg.height, msg.width)
                rec.log(f"{image_path(msg.frame_id)}/depth", rr.DepthImage(depth, meter=1.0))
            case m.CameraInfo():
                pinhole = rr.Pinhole(
                    image_from_camera=np.reshape(msg.k, (3, 3)),
                    resolution=(msg.width, msg.height),
                    image_plane_distance=IMAGE_PLANE_M,
                )
                rec.log(image_path(msg.frame_id), pinhole, static=True)
            case m.Twist():
                rec.log(f"commands/linear/{output_id}", rr.Scalars(msg.linear[0]))
                rec.log(f"commands/angular/{output_id}", rr.Scalars(msg.angular[2]))
            case m.Imu():
                rec.log("imu/linear_acceleration", rr.Scalars(msg.linear_acceleration))
                rec.log("imu/angular_velocity", rr.Scalars(msg.angular_velocity))
            case m.Event():
                text = f"{msg.kind} from {msg.source}: {msg.detail} ({msg.value:.2f})"
                rec.log(f"events/{output_id}", rr.TextLog(text, level=EVENT_LEVELS.get(msg.kind, rr.TextLogLevel.INFO)))
            case m.DynamicObstacles():
                frame = self._truth_root if output_id in TRUTH_OUTPUTS else frame_path(OBSTACLE_FRAMES[output_id])
                rec.log(
                    f"{frame}/{output_id}",
                    rr.Points3D(
                        np.c_[msg.x, msg.y, np.full(len(msg.x), 0.5)],
                        radii=list(msg.radius),
                        labels=list(msg.ids),
                        colors=OBSTACLE_COLORS[output_id],
                    ),
                )
            case m.LocalizationResult():
                self._log_fix(msg)
            case m.PoseWithCovariance():
                self._log_accepted_fix(output_id, msg)
            case m.PoseStamped():
                heading = Rotation.from_quat(msg.orientation).apply((GOAL_ARROW_M, 0.0, 0.0))
                rec.log(
                    f"{frame_path(msg.frame_id)}/{output_id}",
                    rr.Arrows3D(
                        origins=[(msg.position[0], msg.position[1], PATH_Z)],
                        vectors=[heading],
                        labels=[output_id],
                        colors=NAV_COLORS[output_id],
                        radii=0.04,
                    ),
                )
            case m.Path():
                self._log_path(output_id, msg)
            case m.CandidatePaths():
                self._log_candidates(output_id, msg)
            case m.OccupancyGrid():
                self._log_costmap(output_id, msg)
            case m.MissionStatus():
                text = f"{msg.state}: {msg.goal_text!r} -> {msg.goal_label or '?'} [{msg.goal_room or '?'}]"
                if np.isfinite(msg.distance_remaining_m):
                    text += f", {msg.distance_remaining_m:.1f} m to go"
                if msg.candidates:
                    text += f"; closest: {', '.join(msg.candidates)}"
                if msg.detail:
                    text += f"; {msg.detail}"
                rec.log(
                    f"events/{output_id}", rr.TextLog(text, level=MISSION_LEVELS.get(msg.state, rr.TextLogLevel.INFO))
                )
            case m.MissionGoal():
                rec.log(f"events/{output_id}", rr.TextLog(f"mission {msg.mission_id}: {msg.text!r}"))

    def _log_odometry(self, output_id: str, msg: m.Odometry) -> None:
        """A trail in the odometry's frame; the navigation estimate in map, once localization gave map -> odom.

        The fused odometry also places base_link, in place of /tf's wheel odometry: localization computes
        map -> odom against it, so only then do the robot and what it perceives lie on the estimate."""
        position, frame = msg.position, msg.frame_id
        if output_id == "local_odom":
            self._fused_odometry = True
            self.rec.log(frame_path(BASE_FRAME), rr.Transform3D(translation=position, quaternion=msg.orientation))
            self._log_overlay("robot", [position], COLORS[output_id])
            if self._map_from_odom is None:
                return
            rotation, translation = self._map_from_odom
            position, frame = tuple(rotation.apply(position) + translation), MAP_FRAME
        trajectory = self._trajectories[output_id]
        trajectory.append(position)
        if len(trajectory) % TRAJECTORY_EVERY == 1:
            path = f"{self._truth_root}/trajectory/{output_id}" if output_id in TRUTH_OUTPUTS else None
            self.rec.log(
                path or trajectory_path(output_id, frame),
                rr.LineStrips3D([trajectory], colors=COLORS[output_id], radii=0.02),
            )

    def _log_fix(self, msg: m.LocalizationResult) -> None:
        """Every fix as a point in map, coloured by confidence; a failed one where it put the robot, if anywhere,
        else where the estimate had it."""
        stats = f"confidence {msg.confidence:.2f}, {msg.inliers} inliers, {msg.latency_s:.2f} s latency"
        if msg.success:
            label, level = f"{msg.trigger} fix: {stats}", rr.TextLogLevel.INFO
        else:
            label, level = f"{msg.trigger} fix failed: {msg.reason} ({stats})", rr.TextLogLevel.WARN
        self.rec.log("events/localization", rr.TextLog(label, level=level))
        estimate = self._trajectories["local_odom"]
        position = msg.position if np.isfinite(msg.position).all() else estimate[-1] if estimate else None
        if position is None:
            return
        fixes = self._fixes[msg.success]
        fixes.append(_Fix(position, msg.confidence, label))
        low, high = FIX_COLORS
        colors = [low + f.confidence * (high - low) for f in fixes] if msg.success else FAILED_FIX_COLOR
        self.rec.log(
            f"map/localization/{'fixes' if msg.success else 'failures'}",
            rr.Points3D(
                [(*f.position[:2], PATH_Z) for f in fixes],
                colors=colors,
                radii=0.08 if msg.success else 0.15,
                labels=[f.label for f in fixes],
                show_labels=False,
            ),
        )

    def _log_accepted_fix(self, output_id: str, msg: m.PoseWithCovariance) -> None:
        """The fix localization accepted, as its one-sigma ellipse in x, y."""
        variances, axes = np.linalg.eigh(np.reshape(msg.covariance, (6, 6))[:2, :2])
        major = Rotation.from_euler("z", np.arctan2(axes[1, 1], axes[0, 1]))
        self.rec.log(
            f"{frame_path(msg.frame_id)}/{output_id}",
            rr.Ellipsoids3D(
                centers=[(*msg.position[:2], PATH_Z)],
                half_sizes=[(*np.sqrt(np.maximum(variances[::-1], 0.0)), 0.01)],
                quaternions=[major.as_quat()],
                colors=FIX_COLORS[1],
            ),
        )

    def _log_path(self, output_id: str, msg: m.Path) -> None:
        points = np.c_[msg.x, msg.y, np.full(len(msg.x), PATH_Z)]
        color = NAV_COLORS[output_id]
        self.rec.log(
            f"{frame_path(msg.frame_id)}/{output_id}",
            rr.LineStrips3D([points], colors=color, radii=0.03),
            rr.Points3D(points, colors=color, radii=0.05),
        )
        if msg.frame_id == ODOM_FRAME:
            self._log_overlay(output_id, points, color)

    def _log_candidates(self, output_id: str, msg: m.CandidatePaths) -> None:
        """Every candidate as a thin line in its frame, its cost on hover, and over the costmap images."""
        points = np.c_[msg.x, msg.y]
        strips = np.split(points, np.cumsum(msg.lengths)[:-1]) if msg.lengths else []
        chosen = np.arange(len(strips)) == msg.chosen
        colors = np.where(chosen[:, None], CHOSEN_CANDIDATE_COLOR, candidate_colors(msg.costs)).astype(np.uint8)
        self.rec.log(
            f"{frame_path(msg.frame_id)}/{output_id}",
            rr.LineStrips3D(
                [np.c_[strip, np.full(len(strip), PATH_Z)] for strip in strips],
                colors=colors,
                radii=[CANDIDATE_RADII[c] for c in chosen],
                labels=[
                    f"cost {cost:.3f}" + (" (chosen)" if c else "") for cost, c in zip(msg.costs, chosen, strict=True)
                ],
                show_labels=False,
            ),
        )
        if msg.frame_id == ODOM_FRAME and self._grid is not None:
            self.rec.log(
                f"{costmap_image_path('overlay')}/{output_id}",
                rr.LineStrips2D([self._pixels(strip) for strip in strips], colors=colors, radii=0.5),
            )

    def _log_costmap(self, output_id: str, msg: m.OccupancyGrid) -> None:
        """Occupied cells in 3D, in the grid's frame; occupancy and ESDF as images, north up."""
        cells = np.frombuffer(msg.data, dtype=np.int8).reshape(msg.height, msg.width)
        self._grid = GridSpec(msg.resolution, msg.origin[:2], cells.shape)
        occupied = cells == OCCUPIED
        centres = self._grid.cell_to_world(np.argwhere(occupied))
        self.rec.log(
            f"{frame_path(msg.frame_id)}/{output_id}",
            rr.Points3D(np.c_[centres, np.full(len(centres), PATH_Z)], radii=msg.resolution / 2, colors=[20, 20, 20]),
        )
        classes = (np.flipud(cells).astype(np.int16) + 1).astype(np.uint8)
        self.rec.log(costmap_image_path("occupancy"), rr.SegmentationImage(classes))
        esdf = ClearanceMap.from_occupancy(occupied, self._grid).distance
        self.rec.log(
            costmap_image_path("esdf"), rr.DepthImage(np.flipud(esdf).astype(np.float32), meter=1.0, colormap="viridis")
        )

    def _pixels(self, points: object) -> np.ndarray:
        """Points in odom as pixels of the latest costmap's images."""
        grid = self._grid
        xy = np.asarray(points, dtype=float)[:, :2]
        # Image columns run along x from the origin; rows down from the grid's top edge (north up).
        pixels = np.c_[xy[:, 0] - grid.origin[0], grid.shape[0] * grid.resolution - (xy[:, 1] - grid.origin[1])]
        return pixels / grid.resolution

    def _log_overlay(self, name: str, points: object, color: list[int]) -> None:
        """Draw points in odom over the costmap images, in the pixels of the latest costmap: one as a dot, more as
        a line. Nothing before the first costmap."""
        if self._grid is None:
            return
        pixels = self._pixels(points)
        path = f"{costmap_image_path('overlay')}/{name}"
        if len(pixels) == 1:
            self.rec.log(path, rr.Points2D(pixels, radii=3.0, colors=color))
        else:
            self.rec.log(path, rr.LineStrips2D([pixels], radii=1.0, colors=color))
