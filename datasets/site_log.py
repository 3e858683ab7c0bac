"""A site's recorded episodes in the lake, as map building, map evaluation and map viewing read them.

Cameras come from camera_info and /tf_static, trajectories from the odometry table, the building from the
`world.json` the recorder attaches to every episode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import pycolmap

from datasets.lake import Lake
from models.mapping.keyframes import Trajectory, rig_frame_times
from models.mapping.sfm import RigCamera
from schemas.episode import WORLD_ATTACHMENT_NAME
from schemas.topics import BASE_FRAME, BY_OUTPUT, CAMERAS, MAP_FRAME, ODOM_FRAME, camera_frame
from schemas.world import World


def image_topic(camera: str) -> str:
    """The topic of a camera's JPEG pictures."""
    return BY_OUTPUT[f"image_{camera}"].ros_topic


def site_episodes(lake: Lake, site: str) -> list[str]:
    """Episode ids of a site, earliest first."""
    episodes = lake.table("episodes").filter(pl.col("site") == site).sort("start_ns", "episode_id")
    return episodes.select("episode_id").collect()["episode_id"].to_list()


def read_rig(lake: Lake, episode_id: str) -> tuple[RigCamera, ...]:
    """The cameras of an episode, front first: intrinsics from camera_info, mounts from /tf_static."""
    info = lake.table("camera_info").filter(pl.col("episode_id") == episode_id).unique("frame_id", keep="first")
    mounts = (
        lake.table("tf")
        .filter((pl.col("episode_id") == episode_id) & pl.col("static") & (pl.col("frame_id") == BASE_FRAME))
        .unique("child_frame_id", keep="first")
    )
    info = {row["frame_id"]: row for row in info.collect().iter_rows(named=True)}
    mounts = {row["child_frame_id"]: row for row in mounts.collect().iter_rows(named=True)}
    rig = []
    for camera in CAMERAS:
        frame = camera_frame(camera)
        if frame not in info or frame not in mounts:
            raise ValueError(f"episode {episode_id} has no camera_info or /tf_static mount for {frame}")
        mount = mounts[frame]
        base_from_camera = pycolmap.Rigid3d(
            pycolmap.Rotation3d([mount[f"rotation_{a}"] for a in "xyzw"]), [mount[f"translation_{a}"] for a in "xyz"]
        )
        rig.append(
            RigCamera(camera, info[frame]["width"], info[frame]["height"], tuple(info[frame]["k"]), base_from_camera)
        )
    return tuple(rig)


def rig_frames(lake: Lake, episode_id: str, rig: Sequence[RigCamera]) -> np.ndarray:
    """The instants, sorted, at which every camera of the rig took a picture in the episode."""
    topics = [image_topic(c.name) for c in rig]
    stamps = (
        lake.table("images")
        .filter((pl.col("episode_id") == episode_id) & pl.col("topic").is_in(topics))
        .select("topic", "t_ns")
        .collect()
    )
    return np.sort(rig_frame_times({t: stamps.filter(pl.col("topic") == t)["t_ns"].to_numpy() for t in topics}))


def read_pictures(
    lake: Lake, episode_id: str, rig: Sequence[RigCamera], t_ns: Sequence[int]
) -> dict[tuple[str, int], bytes]:
    """(camera, t_ns) -> the JPEG bytes of each rig camera's picture at each of the instants `t_ns`."""
    cameras = {image_topic(c.name): c.name for c in rig}
    pictures = (
        lake.table("images")
        .filter(
            (pl.col("episode_id") == episode_id)
            & pl.col("topic").is_in(list(cameras))
            & pl.col("t_ns").is_in([int(t) for t in t_ns])
        )
        .select("topic", "t_ns", "data")
        .collect()
    )
    return {(cameras[row["topic"]], row["t_ns"]): row["data"] for row in pictures.iter_rows(named=True)}


def read_trajectory(lake: Lake, episode_id: str, topic: str) -> Trajectory:
    """An episode's odometry on `topic` (wheel odometry or ground truth) as a Trajectory."""
    rows = (
        lake.table("odometry")
        .filter((pl.col("episode_id") == episode_id) & (pl.col("topic") == topic))
        .sort("t_ns")
        .collect()
    )
    if rows.is_empty():
        raise ValueError(f"episode {episode_id} has no {topic} odometry")
    return Trajectory(
        rows["t_ns"].to_numpy(),
        rows.select("position_x", "position_y", "position_z").to_numpy(),
        rows.select([f"orientation_{a}" for a in "xyzw"]).to_numpy(),
    )


def read_map_from_odom(lake: Lake, episode_id: str) -> pycolmap.Rigid3d:
    """The episode's first map -> odom transform on /tf; the identity where none was recorded."""
    rows = (
        lake.table("tf")
        .filter(
            (pl.col("episode_id") == episode_id)
            & (pl.col("frame_id") == MAP_FRAME)
            & (pl.col("child_frame_id") == ODOM_FRAME)
        )
        .sort("t_ns")
        .head(1)
        .collect()
    )
    if rows.is_empty():
        return pycolmap.Rigid3d()
    row = rows.row(0, named=True)
    return pycolmap.Rigid3d(
        pycolmap.Rotation3d([row[f"rotation_{a}"] for a in "xyzw"]), [row[f"translation_{a}"] for a in "xyz"]
    )


def recorded_world(lake: Lake, episode_ids: Sequence[str]) -> World:
    """The building the episodes were recorded in: the recorder attaches its `world.json` to every episode."""
    attachments = (
        lake.table("attachments")
        .filter(pl.col("episode_id").is_in(list(episode_ids)) & (pl.col("name") == WORLD_ATTACHMENT_NAME))
        .select("data")
        .head(1)
        .collect()
    )
    if attachments.is_empty():
        raise ValueError(f"no episode of the site carries a {WORLD_ATTACHMENT_NAME} attachment: pass the world dir")
    return World.from_json(attachments.item().decode())
