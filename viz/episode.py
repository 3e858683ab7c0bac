"""Log a robot episode to Rerun: the building, the robot pose and trajectories, cameras, events.

Pure over a `rerun.RecordingStream`, so the dora `viz` node, replay tools and tests share it.
"""

from __future__ import annotations

import numpy as np
import rerun as rr
from scipy.spatial.transform import Rotation

from schemas import messages as m
from schemas.topics import BY_OUTPUT
from schemas.world import World

TIMELINE = "robot_time"
TRAJECTORY_EVERY = 10  # re-log the trajectory line every N poses: a full strip per pose is quadratic


def _set_time(rec: rr.RecordingStream, t_ns: int) -> None:
    rec.set_time(TIMELINE, timestamp=np.datetime64(int(t_ns), "ns"))


def log_world(rec: rr.RecordingStream, world: World) -> None:
    """Static scene: walls, labelled rooms and landmarks, in `map`."""
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
            labels=[f"{r.name} ({r.function})" for r in world.rooms],
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
            colors=[230, 160, 30],
        ),
        static=True,
    )


class EpisodeLogger:
    """Turns our messages into Rerun entities under `map/robot`."""

    def __init__(self, rec: rr.RecordingStream) -> None:
        self.rec = rec
        self._trajectories: dict[str, list[tuple[float, float, float]]] = {"ground_truth": [], "odom": []}

    def log(self, output_id: str, msg: object) -> None:
        if output_id not in BY_OUTPUT:
            raise KeyError(f"unknown output {output_id!r}")
        rec = self.rec
        _set_time(rec, msg.t_ns)
        match msg:
            case m.Odometry():
                self._log_odometry(output_id, msg)
            case m.Transform() if output_id == "tf_static":
                rec.log(
                    f"map/robot/{msg.child_frame_id}",
                    rr.Transform3D(translation=msg.translation, quaternion=msg.rotation),
                    static=True,
                )
            case m.CompressedImage():
                rec.log(
                    f"map/robot/{msg.frame_id}/image",
                    rr.EncodedImage(contents=msg.data, media_type=f"image/{msg.format}"),
                )
            case m.DepthImage():
                depth = np.frombuffer(msg.data, dtype="<f4").reshape(msg.height, msg.width)
                rec.log(f"map/robot/{msg.frame_id}/image/depth", rr.DepthImage(depth, meter=1.0))
            case m.CameraInfo():
                rec.log(
                    f"map/robot/{msg.frame_id}/image",
                    rr.Pinhole(image_from_camera=np.reshape(msg.k, (3, 3)), resolution=(msg.width, msg.height)),
                    static=True,
                )
            case m.Twist():
                rec.log(f"commands/{output_id}/linear", rr.Scalars(msg.linear[0]))
                rec.log(f"commands/{output_id}/angular", rr.Scalars(msg.angular[2]))
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
            case m.Imu():
                rec.log("imu/accel_z", rr.Scalars(msg.linear_acceleration[2]))
                rec.log("imu/gyro_z", rr.Scalars(msg.angular_velocity[2]))

    def _log_odometry(self, output_id: str, msg: m.Odometry) -> None:
        trajectory = self._trajectories[output_id]
        trajectory.append(msg.position)
        if output_id == "ground_truth":
            self.rec.log("map/robot", rr.Transform3D(translation=msg.position, quaternion=msg.orientation))
            yaw = Rotation.from_quat(msg.orientation).as_euler("zyx")[0]
            self.rec.log("robot/yaw", rr.Scalars(yaw))
        if len(trajectory) % TRAJECTORY_EVERY == 1:
            color = [40, 200, 80] if output_id == "ground_truth" else [200, 80, 200]
            self.rec.log(f"map/trajectory/{output_id}", rr.LineStrips3D([trajectory], colors=color, radii=0.02))
