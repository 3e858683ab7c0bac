"""Log a robot episode to Rerun, and the blueprint that lays it out.

Entities follow the REP-105 tf tree: `map`, `map/odom` (map -> odom from /tf), `map/odom/base_link`
(odom -> base_link from /tf) and each sensor frame under base_link (from /tf_static), its camera
picture on `<frame>/image`. A trajectory is drawn in the frame its poses are in: ground truth under
`map`, wheel odometry under `map/odom`, so the viewer places the odometry with the map -> odom
transform of the time shown and it lies on the ground truth up to drift.

Pure over a `rerun.RecordingStream`, so the dora `viz` node, replay tools and tests share it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rerun as rr
import rerun.blueprint as rrb

from schemas import messages as m
from schemas.robot import DEFAULT_ROBOT
from schemas.topics import BASE_FRAME, BY_OUTPUT, CAMERAS, MAP_FRAME, ODOM_FRAME, camera_frame
from schemas.world import World

TIMELINE = "robot_time"
TRAJECTORY_EVERY = 10  # re-log the trajectory line every N poses: a full strip per pose is quadratic
FRAME_PATHS = {MAP_FRAME: "map", ODOM_FRAME: "map/odom", BASE_FRAME: "map/odom/base_link"}
COMMANDS = {"expert_cmd_vel": ("expert, before safety", [230, 160, 30]), "cmd_vel": ("after safety", [40, 120, 220])}
AXES = (["x", "y", "z"], [[220, 60, 60], [60, 180, 60], [60, 100, 220]])
COLORS = {"ground_truth": [40, 200, 80], "odom": [200, 80, 200]}
IMAGE_PLANE_M = 0.3  # frustum depth in the map view: small beside the rooms


def frame_path(frame: str) -> str:
    """The entity of a tf frame; sensor frames hang off base_link, as every /tf_static transform we publish."""
    return FRAME_PATHS.get(frame, f"{FRAME_PATHS[BASE_FRAME]}/{frame}")


def trajectory_path(output_id: str, frame: str) -> str:
    """Where an odometry topic's trail is drawn: under the frame its poses are given in."""
    return f"{frame_path(frame)}/trajectory/{output_id}"


def image_path(frame: str) -> str:
    return f"{frame_path(frame)}/image"


def _set_time(rec: rr.RecordingStream, t_ns: int) -> None:
    rec.set_time(TIMELINE, timestamp=np.datetime64(int(t_ns), "ns"))


def log_world(rec: rr.RecordingStream, world: World) -> None:
    """Static scene in `map`: walls, rooms named at their centres, landmarks (named on hover, as there are many)."""
    rec.log("map", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    walls = [w.box for w in world.walls]
    rec.log(
        "map/walls",
        rr.Boxes3D(centers=[b.center for b in walls], half_sizes=[b.half_size for b in walls], colors=[150, 150, 160]),
        static=True,
    )
    rec.log(
        "map/rooms",
        rr.Points3D(
            [(*r.center, 0.05) for r in world.rooms],
            labels=[r.name for r in world.rooms],
            show_labels=True,
            radii=0.1,
            colors=[40, 120, 220],
        ),
        static=True,
    )
    landmarks = world.landmarks
    rec.log(
        "map/landmarks",
        rr.Boxes3D(
            centers=[lm.box.center for lm in landmarks],
            half_sizes=[lm.box.half_size for lm in landmarks],
            labels=[lm.text or f"{lm.color} {lm.category}" for lm in landmarks],
            show_labels=False,
            colors=[230, 160, 30],
        ),
        static=True,
    )


def episode_blueprint(world: World) -> rrb.Blueprint:
    """A large top-down map with the robot and trajectories, plots of commands and IMU, the cameras in a row."""
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
    plots = rrb.Vertical(
        rrb.TimeSeriesView(origin="commands/linear", name="Speed command (m/s)"),
        rrb.TimeSeriesView(origin="commands/angular", name="Yaw rate command (rad/s)"),
        rrb.TimeSeriesView(origin="imu/linear_acceleration", name="IMU acceleration (m/s²)"),
        rrb.TimeSeriesView(origin="imu/angular_velocity", name="IMU angular velocity (rad/s)"),
        rrb.TextLogView(origin="events", name="Events"),
    )
    cameras = [rrb.Spatial2DView(origin=image_path(camera_frame(c)), contents="$origin", name=c) for c in CAMERAS]
    depth = rrb.Spatial2DView(
        origin=image_path(camera_frame("front")), contents="$origin/depth", name="front depth (m)"
    )
    return rrb.Blueprint(
        rrb.Vertical(
            rrb.Horizontal(map_view, plots, column_shares=[3, 2]),
            rrb.Horizontal(*cameras, depth),
            row_shares=[3, 1],
        ),
        rrb.BlueprintPanel(state="collapsed"),
        rrb.SelectionPanel(state="collapsed"),
    )


def episode_recording(world: World, recording_id: str, rrd: Path | None) -> rr.RecordingStream:
    """A stream saving to `rrd` (else to a spawned viewer) with the episode blueprint, and the building logged."""
    rec = rr.RecordingStream("astra", recording_id=recording_id)
    blueprint = episode_blueprint(world)
    if rrd is None:
        rec.spawn(default_blueprint=blueprint)
    else:
        rrd.parent.mkdir(parents=True, exist_ok=True)
        rec.save(rrd, default_blueprint=blueprint)
    log_world(rec, world)
    return rec


class EpisodeLogger:
    """Turns our messages into Rerun entities (see the module docstring)."""

    def __init__(self, rec: rr.RecordingStream) -> None:
        self.rec = rec
        self._trajectories: dict[str, list[tuple[float, float, float]]] = {"ground_truth": [], "odom": []}
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

    def log(self, output_id: str, msg: object) -> None:
        if output_id not in BY_OUTPUT:
            raise KeyError(f"unknown output {output_id!r}")
        rec = self.rec
        _set_time(rec, msg.t_ns)
        match msg:
            case m.Odometry():
                self._log_trajectory(output_id, msg)
            case m.TFMessage():
                for tf in msg.transforms:
                    rec.log(
                        frame_path(tf.child_frame_id),
                        rr.Transform3D(translation=tf.translation, quaternion=tf.rotation),
                        static=output_id == "tf_static",
                    )
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
                level = (
                    rr.TextLogLevel.WARN
                    if msg.kind in ("collision", "estop", "watchdog_stop")
                    else rr.TextLogLevel.INFO
                )
                rec.log(
                    "events", rr.TextLog(f"{msg.kind} from {msg.source}: {msg.detail} ({msg.value:.2f})", level=level)
                )
            case m.DynamicObstacles():
                rec.log(
                    "map/obstacles",
                    rr.Points3D(
                        np.c_[msg.x, msg.y, np.full(len(msg.x), 0.5)],
                        radii=list(msg.radius),
                        labels=list(msg.ids),
                        colors=[220, 40, 40],
                    ),
                )

    def _log_trajectory(self, output_id: str, msg: m.Odometry) -> None:
        trajectory = self._trajectories[output_id]
        trajectory.append(msg.position)
        if len(trajectory) % TRAJECTORY_EVERY == 1:
            self.rec.log(
                trajectory_path(output_id, msg.frame_id),
                rr.LineStrips3D([trajectory], colors=COLORS[output_id], radii=0.02),
            )
