"""`astra dataset local`: tours of simulated buildings in the lake into Astra-Local's training set
(schemas.local_dataset), as one Apache Beam pipeline.

    ReadTourEpisodes     the lake's episodes of simulated buildings with depth (they carry world.json and the truth)
    CutWindows           episode -> its FRAMES and WINDOWS tables: the robot's own wheel + IMU filter and depth
                         costmap replayed over the recording (`models.odometry`, `models.costmap`, as the `local` node
                         runs them), and the truth read beside them for what the models learn
    WriteEpisodes        frames/<episode>.parquet and windows/<episode>.parquet (a sink: each episode as it comes)
    WriteDataset         manifest.json, once every episode is written

On the direct runner episodes are cut one after another; `--runner dask` spreads them over processes or a cluster.
The dataset is written into a temporary folder beside `out` and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from datasets.lake import Lake
from datasets.site_log import recorded_world
from models import costmap as costmap_module
from models import odometry as odometry_module
from models.astra_local.crops import costmap_codes, true_crops
from models.astra_local.pictures import shrink_camera
from models.costmap import CostmapConfig, LocalCostmap, matched_costmap
from models.navigation import se2
from models.odometry import WheelImuOdometry
from models.planning import ClearanceMap, occupancy_grid
from pipelines.global_dataset import TourEpisode, open_tours, staged_dataset
from pipelines.progress import marker_progress
from pipelines.runner import run_pipeline
from schemas.local_dataset import (
    FRAMES,
    FRAMES_DIR,
    LOCAL_GEOMETRY,
    WINDOWS,
    WINDOWS_DIR,
    LocalDatasetManifest,
    LocalGeometry,
)
from schemas.messages import CameraInfo, DepthImage, Imu, WheelState
from schemas.robot import DEFAULT_ROBOT, WHEELS
from schemas.topics import BY_OUTPUT, CAMERAS, GROUND_TRUTH_TOPIC, camera_frame

_IMU = (
    "angular_velocity_x",
    "angular_velocity_y",
    "angular_velocity_z",
    "linear_acceleration_x",
    "linear_acceleration_y",
    "linear_acceleration_z",
)


@dataclass(frozen=True)
class LocalDatasetConfig:
    """The geometry of frames and windows, and the costmap the robot builds (as its `local` node does)."""

    geometry: LocalGeometry = LOCAL_GEOMETRY
    costmap: CostmapConfig = field(default_factory=CostmapConfig)


@dataclass(frozen=True)
class LocalDatasetSummary:
    """What one `build_local_dataset` wrote."""

    out: str
    lake_version: int
    sites: int
    episodes: int
    frames: int
    windows: int
    seconds: float


# --- reading one episode -----------------------------------------------------------------------------


def _rows(lake: Lake, table: str, episode_id: str, topics: Sequence[str], columns: Sequence[str]) -> pl.DataFrame:
    return (
        lake.table(table)
        .filter((pl.col("episode_id") == episode_id) & pl.col("topic").is_in(list(topics)))
        .select("t_ns", "topic", *columns)
        .sort("t_ns")
        .collect()
    )


@dataclass
class _Truth:
    """The simulator's pose over an episode, interpolated at any time, with its path's arc length."""

    t_ns: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray  # unwrapped
    speed: np.ndarray
    arc: np.ndarray

    @classmethod
    def read(cls, lake: Lake, episode_id: str) -> _Truth:
        quat = [f"orientation_{a}" for a in "xyzw"]
        rows = _rows(
            lake, "odometry", episode_id, [GROUND_TRUTH_TOPIC], ["position_x", "position_y", *quat, "linear_x"]
        )
        if rows.height < 2:
            raise ValueError(f"episode {episode_id} has no ground truth trajectory")
        xy = rows.select("position_x", "position_y").to_numpy()
        yaw = np.unwrap([se2.yaw_of(tuple(q)) for q in rows.select(quat).iter_rows()])
        arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
        return cls(rows["t_ns"].to_numpy(), xy, yaw, np.abs(rows["linear_x"].to_numpy()), arc)

    def pose(self, t_ns: int) -> se2.Pose2:
        x, y = (float(np.interp(t_ns, self.t_ns, self.xy[:, i])) for i in (0, 1))
        return x, y, float(np.interp(t_ns, self.t_ns, self.yaw))

    def ahead(self, t_ns: int, metres: float) -> np.ndarray:
        """The point `metres` along the path after `t_ns`, or the path's end."""
        s = float(np.interp(t_ns, self.t_ns, self.arc)) + metres
        return np.array([np.interp(s, self.arc, self.xy[:, i]) for i in (0, 1)])


@dataclass
class _Frame:
    t_ns: int
    odom: se2.Pose2
    velocity: tuple[float, float]
    costmap: tuple[np.ndarray, Any]  # the costmap's nav_msgs cells and GridSpec after this instant's depth


def replay_digest(config: LocalDatasetConfig = LocalDatasetConfig()) -> str:
    """What the frames' own estimates come from: the filter's and the costmap's code, the robot and the costmap's
    settings, as a short digest. Frames cut by another filter (`astra eval odometry --work` keeps them) must not be
    scored as this one's: session 41 scored a new filter's model against the old filter's frames."""
    digest = hashlib.sha256()
    for module in (odometry_module, costmap_module):
        digest.update(inspect.getsource(module).encode())
    digest.update(repr((DEFAULT_ROBOT, config.costmap)).encode())
    return digest.hexdigest()[:16]


def _replay(lake: Lake, episode_id: str, config: LocalDatasetConfig) -> tuple[list[_Frame], pl.DataFrame]:
    """The robot's filter and costmap over the episode, as `local` runs them; a frame every frame_period_s.

    Returns the frames and the depth rows at their instants."""
    imu = _rows(lake, "imu", episode_id, [BY_OUTPUT["imu"].ros_topic], ["frame_id", *_IMU])
    wheels = _rows(lake, "wheels", episode_id, [BY_OUTPUT["wheels"].ros_topic], ["name", "position", "velocity"])
    depth_topics = [BY_OUTPUT[f"depth_{c}"].ros_topic for c in CAMERAS]
    depth = _rows(lake, "images", episode_id, depth_topics, ["frame_id", "width", "height", "data"])
    infos = _camera_infos(lake, episode_id)
    if imu.is_empty() or wheels.is_empty() or depth.is_empty():
        raise ValueError(f"episode {episode_id} lacks IMU, wheels or depth: record tours with --depth")
    stamps = depth.group_by("t_ns").len().filter(pl.col("len") == len(CAMERAS))["t_ns"].sort().to_numpy()
    step = max(1, round(config.geometry.frame_period_s / (np.median(np.diff(stamps)) * 1e-9)))
    first = stamps[stamps > wheels["t_ns"][0]]
    frame_stamps = set(first[::step].tolist())

    odometry = WheelImuOdometry(DEFAULT_ROBOT)
    recorded = replace(DEFAULT_ROBOT, camera_width=next(iter(infos.values())).width)
    costmap = LocalCostmap(matched_costmap(config.costmap, recorded), DEFAULT_ROBOT)
    events = sorted(
        [(t, 0, i) for i, t in enumerate(imu["t_ns"])]
        + [(t, 1, i) for i, t in enumerate(wheels["t_ns"])]
        + [(int(t), 2, 0) for t in stamps]
    )
    frames = []
    by_stamp = {t: rows for (t,), rows in depth.filter(pl.col("t_ns").is_in(stamps)).group_by("t_ns")}
    imu_rows, wheel_rows = imu.rows(named=True), wheels.rows(named=True)
    for t, kind, i in events:
        if kind == 0:
            row = imu_rows[i]
            odometry.on_imu(
                Imu(
                    t,
                    row["frame_id"],
                    (0.0, 0.0, 0.0, 1.0),
                    tuple(row[c] for c in _IMU[:3]),
                    tuple(row[c] for c in _IMU[3:]),
                )
            )
        elif kind == 1:
            row = wheel_rows[i]
            odometry.on_wheels(WheelState(t, tuple(row["name"]), tuple(row["position"]), tuple(row["velocity"])))
        elif odometry.t_ns is not None:
            images = [
                (DepthImage(t, r["frame_id"], r["width"], r["height"], r["data"]), infos[r["frame_id"]])
                for r in by_stamp[t].rows(named=True)
            ]
            costmap.update(t, odometry.pose(), images)
            if t in frame_stamps:
                cells, spec = costmap.occupancy()
                frames.append(_Frame(t, odometry.pose(), odometry.velocity(), (cells, spec)))
    chosen = depth.filter(pl.col("t_ns").is_in([f.t_ns for f in frames]))
    return frames, chosen


def _perturbed_spans(lake: Lake, episode_id: str) -> np.ndarray:
    """(start, end) ns of the expert's perturbations in the episode (sim.perturbation): their windows' futures are
    the perturbation, not the expert's driving."""
    if "events" not in lake.tables():
        return np.zeros((0, 2), np.int64)
    rows = _rows(lake, "events", episode_id, [BY_OUTPUT["events"].ros_topic], ["kind", "value"]).filter(
        pl.col("kind") == "perturbation"
    )
    starts = rows["t_ns"].to_numpy().astype(np.int64)
    return np.column_stack([starts, starts + np.round(rows["value"].to_numpy() * 1e9).astype(np.int64)])


def _camera_infos(lake: Lake, episode_id: str) -> dict[str, CameraInfo]:
    topics = [BY_OUTPUT[f"camera_info_{c}"].ros_topic for c in CAMERAS]
    rows = _rows(
        lake, "camera_info", episode_id, topics, ["frame_id", "width", "height", "distortion_model", "d", "k", "r", "p"]
    ).unique("topic", keep="first")
    return {
        r["frame_id"]: CameraInfo(
            r["t_ns"],
            r["frame_id"],
            r["width"],
            r["height"],
            tuple(r["k"]),
            r["distortion_model"],
            tuple(r["d"]),
            tuple(r["r"]),
            tuple(r["p"]),
        )
        for r in rows.rows(named=True)
    }


def _agents(lake: Lake, episode_id: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Stamps and, at each, the (N, 3) x, y, radius of every person and cart, from the simulator's truth."""
    if "obstacles" not in lake.tables():  # a lake of static buildings only
        return np.zeros(0, np.int64), []
    rows = _rows(lake, "obstacles", episode_id, [BY_OUTPUT["obstacles"].ros_topic], ["x", "y", "radius"])
    discs = [np.column_stack([r["x"], r["y"], r["radius"]]).reshape(-1, 3) for r in rows.rows(named=True)]
    return rows["t_ns"].to_numpy(), discs


def _discs_at(agents: tuple[np.ndarray, list[np.ndarray]], t_ns: int) -> np.ndarray:
    stamps, discs = agents
    if not len(stamps):
        return np.zeros((0, 3))
    return discs[int(np.argmin(np.abs(stamps - t_ns)))]


# --- frames and windows ------------------------------------------------------------------------------


def _downsampled(
    depth_rows: pl.DataFrame, jpeg_rows: pl.DataFrame, infos: dict[str, CameraInfo], geometry: LocalGeometry
) -> dict[str, list]:
    """One frame's pictures, depth and camera matrices at the stored size (models.astra_local.pictures), cameras in
    CAMERAS order."""
    out: dict[str, list] = {"jpeg": [], "depth": [], "k": []}
    for camera in CAMERAS:
        info = infos[camera_frame(camera)]
        depth = depth_rows.filter(pl.col("frame_id") == info.frame_id).row(0, named=True)
        metres = np.frombuffer(depth["data"], dtype="<f4").reshape(depth["height"], depth["width"])
        jpeg = jpeg_rows.filter(pl.col("frame_id") == info.frame_id)["data"][0]
        shrunk = shrink_camera(jpeg, metres, info, geometry)
        out["jpeg"].append(shrunk.jpeg)
        out["depth"].append(shrunk.depth.tobytes())
        out["k"].append(list(shrunk.k))
    return out


def cut_windows(tour: TourEpisode, lake: Lake, config: LocalDatasetConfig) -> tuple[pa.Table, pa.Table]:
    """One episode's FRAMES and WINDOWS tables."""
    g = config.geometry
    world = recorded_world(lake, [tour.episode_id])
    frames, depth = _replay(lake, tour.episode_id, config)
    truth = _Truth.read(lake, tour.episode_id)
    agents = _agents(lake, tour.episode_id)
    infos = _camera_infos(lake, tour.episode_id)
    perturbed = _perturbed_spans(lake, tour.episode_id)
    jpeg_topics = [BY_OUTPUT[f"image_{c}"].ros_topic for c in CAMERAS]
    jpeg = _rows(lake, "images", tour.episode_id, jpeg_topics, ["frame_id", "data"])
    imu = _rows(lake, "imu", tour.episode_id, [BY_OUTPUT["imu"].ros_topic], list(_IMU))
    wheels = _rows(lake, "wheels", tour.episode_id, [BY_OUTPUT["wheels"].ros_topic], ["name", "position", "velocity"])
    wheel_order = [list(wheels["name"][0]).index(w) for w in WHEELS]
    tags = {
        "site": tour.site,
        "kind": tour.kind,
        "world_seed": tour.world_seed,
        "dynamic": bool(world.agents),
        "episode_id": tour.episode_id,
    }

    frame_rows, previous = [], -1
    for frame in frames:
        since_imu = imu.filter(pl.col("t_ns").is_between(previous + 1, frame.t_ns))
        since_wheels = wheels.filter(pl.col("t_ns").is_between(previous + 1, frame.t_ns))
        wheel_values = [
            [r[1][i] for i in wheel_order] + [r[2][i] for i in wheel_order]
            for r in since_wheels.select("name", "position", "velocity").iter_rows()
        ]
        pictures = _downsampled(
            depth.filter(pl.col("t_ns") == frame.t_ns), jpeg.filter(pl.col("t_ns") == frame.t_ns), infos, g
        )
        true = truth.pose(frame.t_ns)
        frame_rows.append(
            tags
            | {"t_ns": frame.t_ns, "cameras": list(CAMERAS), **pictures}
            | dict(zip(("odom_x", "odom_y", "odom_yaw"), frame.odom, strict=True))
            | {"odom_v": frame.velocity[0], "odom_w": frame.velocity[1]}
            | dict(zip(("true_x", "true_y", "true_yaw"), (true[0], true[1], se2.wrap(true[2])), strict=True))
            | {
                "imu_t_ns": since_imu["t_ns"].to_list(),
                "imu": since_imu.select(_IMU).to_numpy().astype(np.float32).ravel().tolist(),
                "wheels_t_ns": since_wheels["t_ns"].to_list(),
                "wheels": np.asarray(wheel_values, dtype=np.float32).ravel().tolist(),
            }
        )
        previous = frame.t_ns

    static_occupied = occupancy_grid(world)
    static_clearance = ClearanceMap.from_occupancy(static_occupied, world.grid)
    horizon_ns = round(max(g.horizon_s, g.esdf_ahead_s) * 1e9)
    window_rows = []
    for n in range(g.frames - 1, len(frames)):
        now = frames[n]
        if now.t_ns + horizon_ns > truth.t_ns[-1]:
            break
        if ((perturbed[:, 0] < now.t_ns + horizon_ns) & (perturbed[:, 1] > now.t_ns)).any():
            continue  # its future is a perturbation; the windows after it, whose past it is, show the recovery
        past = frames[n - g.frames + 1 : n + 1]
        here = truth.pose(now.t_ns)
        ego = se2.inverse(here)
        codes = np.stack([costmap_codes(*f.costmap, now.odom, g) for f in past])
        motion = [(0.0, 0.0, 0.0)] + [se2.compose(se2.inverse(a.odom), b.odom) for a, b in itertools.pairwise(past)]
        waypoints = [
            se2.compose(ego, truth.pose(now.t_ns + round(k * g.waypoint_period_s * 1e9)))
            for k in range(1, g.waypoints + 1)
        ]
        goal = se2.apply(ego, truth.ahead(now.t_ns, g.goal_ahead_m)[None])[0]
        crops = [
            true_crops(static_occupied, static_clearance, here, _discs_at(agents, t), g)
            for t in (now.t_ns, now.t_ns + round(g.esdf_ahead_s * 1e9))
        ]
        window_rows.append(
            tags
            | {
                "t_ns": now.t_ns,
                "frame_t_ns": [f.t_ns for f in past],
                "occupancy": codes.tobytes(),
                "velocity": [float(v) for f in past for v in f.velocity],
                "motion": [float(v) for m in motion for v in m],
                "goal_x": float(goal[0]),
                "goal_y": float(goal[1]),
                "trajectory": [float(v) for w in waypoints for v in w],
                "true_occupancy": np.stack([c[0] for c in crops]).astype(np.uint8).tobytes(),
                "esdf": np.stack([c[1] for c in crops]).astype("<f2").tobytes(),
                "expert_v": float(np.interp(now.t_ns, truth.t_ns, truth.speed)),
            }
        )
    return pa.Table.from_pylist(frame_rows, schema=FRAMES), pa.Table.from_pylist(window_rows, schema=WINDOWS)


# --- the pipeline ----------------------------------------------------------------------------------


def _cut_and_mark(
    tour: TourEpisode, lake: Lake, config: LocalDatasetConfig, progress_dir: str
) -> tuple[TourEpisode, pa.Table, pa.Table]:
    frames, windows = cut_windows(tour, lake, config)
    Path(progress_dir, tour.episode_id).touch()
    return tour, frames, windows


class CutWindows(beam.PTransform):
    """TourEpisode -> (TourEpisode, FRAMES table, WINDOWS table), one episode per element."""

    def __init__(self, lake: Lake, config: LocalDatasetConfig, progress_dir: Path) -> None:
        super().__init__()
        self.lake, self.config, self.progress_dir = lake, config, str(progress_dir)

    def expand(self, tours: beam.PCollection[TourEpisode]) -> beam.PCollection[tuple[TourEpisode, pa.Table, pa.Table]]:
        return tours | beam.Map(_cut_and_mark, self.lake, self.config, self.progress_dir)


def _write_episode(cut: tuple[TourEpisode, pa.Table, pa.Table], folder: str) -> tuple[TourEpisode, bool, int, int]:
    tour, frames, windows = cut
    pq.write_table(frames, Path(folder, FRAMES_DIR, f"{tour.episode_id}.parquet"))
    pq.write_table(windows, Path(folder, WINDOWS_DIR, f"{tour.episode_id}.parquet"))
    dynamic = bool(frames["dynamic"][0].as_py()) if frames.num_rows else False
    return tour, dynamic, frames.num_rows, windows.num_rows


class WriteEpisodes(beam.PTransform):
    """(TourEpisode, frames, windows) -> (TourEpisode, dynamic, frames written, windows written)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = str(folder)

    def expand(self, cut: beam.PCollection) -> beam.PCollection[tuple[TourEpisode, bool, int, int]]:
        return cut | beam.Map(_write_episode, self.folder)


def _write_manifest(written: list[tuple[TourEpisode, bool, int, int]], folder: str, manifest: dict[str, Any]) -> None:
    sites: dict[str, dict[str, Any]] = {}
    order = {episode: i for i, episode in enumerate(manifest["episodes"])}
    for tour, dynamic, frames, windows in sorted(written, key=lambda w: order[w[0].episode_id]):
        site = sites.setdefault(
            tour.site,
            {
                "kind": tour.kind,
                "world_seed": tour.world_seed,
                "episodes": [],
                "dynamic_episodes": [],
                "frames": 0,
                "windows": 0,
            },
        )
        site["episodes"].append(tour.episode_id)
        if dynamic:
            site["dynamic_episodes"].append(tour.episode_id)
        site["frames"] += frames
        site["windows"] += windows
    counts = {"frames": sum(w[2] for w in written), "windows": sum(w[3] for w in written)}
    LocalDatasetManifest(**manifest, sites=sites, counts=counts).write(Path(folder))


class WriteDataset(beam.PTransform):
    """Every episode written -> manifest.json."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        super().__init__()
        self.folder, self.manifest = str(folder), manifest

    def expand(self, written: beam.PCollection) -> beam.PCollection[None]:
        return written | beam.combiners.ToList() | beam.Map(_write_manifest, self.folder, self.manifest)


def build_local_dataset(
    lake: Path,
    out: Path,
    sites: Sequence[str] | None = None,
    config: LocalDatasetConfig = LocalDatasetConfig(),
    runner: str = "direct",
    dask_address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> LocalDatasetSummary:
    """Cut the tours of simulated buildings in the lake (of `sites`, or all) into a training set at `out`.

    Raises ValueError where the lake has no such tours, a setting is wrong, or `out` exists already.
    """
    started = time.perf_counter()
    out, source, tours = open_tours(lake, out, sites)
    depth_topics = [BY_OUTPUT[f"depth_{c}"].ros_topic for c in CAMERAS]
    with_depth = set(
        source.table("images")
        .filter(pl.col("topic").is_in(depth_topics))
        .select("episode_id")
        .unique()
        .collect()["episode_id"]
    )
    if blind := [t.episode_id for t in tours if t.episode_id not in with_depth]:
        raise ValueError(
            f"{len(blind)} tours in the lake have no depth images (e.g. episode {blind[0]}): record them with "
            "`astra sim tours --depth`, or choose other sites with --site"
        )
    manifest = {
        "lake": str(source.path),
        "lake_version": source.version,
        "episodes": [t.episode_id for t in tours],
        "geometry": asdict(config.geometry),
        "replay": replay_digest(config),
    }
    with staged_dataset(out, [FRAMES_DIR, WINDOWS_DIR]) as (staging, progress_dir):

        def build(pipeline: beam.Pipeline) -> None:
            _ = (
                pipeline
                | "ReadTourEpisodes" >> beam.Create(tours)
                | "CutWindows" >> CutWindows(source, config, progress_dir)
                | "WriteEpisodes" >> WriteEpisodes(staging)
                | "WriteDataset" >> WriteDataset(staging, manifest)
            )

        with marker_progress(progress_dir, len(tours), "dataset local", progress, unit="episode"):
            run_pipeline(build, runner, dask_address, workers)
    written = LocalDatasetManifest.read(out)
    return LocalDatasetSummary(
        out=str(out),
        lake_version=source.version,
        sites=len(written.sites),
        episodes=len(written.episodes),
        frames=written.counts["frames"],
        windows=written.counts["windows"],
        seconds=time.perf_counter() - started,
    )
