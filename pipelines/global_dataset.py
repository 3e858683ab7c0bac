"""`astra dataset global`: tours of simulated buildings in the lake into Astra-Global's training set
(schemas.global_dataset), as one Apache Beam pipeline.

    ReadTourEpisodes     the lake's episodes of simulated buildings (they carry world.json and the true trajectory)
    LabelFrames          episode -> its FRAMES rows: instants picked along the true trajectory (KeyframeConfig), each
                         camera's picture there with its true pose and the landmarks the segmentation shows
    WriteFrames          one Parquet file per episode under frames/ (a sink: each episode is written as it comes)
    DescribeBuildings    the episodes' buildings -> LANDMARKS rows, once per site
    WriteDataset         landmarks.parquet and manifest.json, once every episode is written

The dataset is written into a temporary folder beside `out` and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.spatial.transform import Rotation

from datasets.lake import Lake
from datasets.site_log import read_pictures, read_rig, read_trajectory, recorded_world, rig_frames
from models.landmarks import NodeView
from models.mapping.keyframes import KeyframeConfig, select_keyframes
from pipelines.progress import marker_progress
from pipelines.runner import run_pipeline
from schemas.episode import WORLD_ATTACHMENT_NAME
from schemas.global_dataset import (
    FRAMES,
    FRAMES_DIR,
    LANDMARKS,
    LANDMARKS_FILE,
    GlobalDatasetManifest,
)
from schemas.robot import DEFAULT_ROBOT
from schemas.topics import GROUND_TRUTH_TOPIC
from schemas.world import World
from sim.annotations import AnnotatedLandmarkExtractor
from sim.world import write_world


@dataclass(frozen=True)
class GlobalDatasetConfig:
    """Which instants of a tour become frames, and when a landmark counts as seen."""

    frames: KeyframeConfig = field(default_factory=KeyframeConfig)  # as map building picks keyframes
    min_pixels: int = 40  # of a landmark in view, for the picture to see it (as the annotated extractor counts)


@dataclass(frozen=True)
class TourEpisode:
    episode_id: str
    site: str
    kind: str
    world_seed: int


@dataclass(frozen=True)
class DatasetSummary:
    """What one `build_global_dataset` wrote."""

    out: str
    lake_version: int
    sites: int
    episodes: int
    frames: int  # rows: one per camera picture
    landmarks: int
    seconds: float


def tour_episodes(lake: Lake, sites: Sequence[str] | None = None) -> list[TourEpisode]:
    """Episodes recorded in simulated buildings (with world.json and ground truth), by site and start."""
    with_world = lake.table("attachments").filter(pl.col("name") == WORLD_ATTACHMENT_NAME).select("episode_id").unique()
    with_truth = lake.table("odometry").filter(pl.col("topic") == GROUND_TRUTH_TOPIC).select("episode_id").unique()
    episodes = (
        lake.table("episodes")
        .join(with_world, on="episode_id")
        .join(with_truth, on="episode_id")
        .filter(pl.col("site").is_not_null())
        .select("episode_id", "site", "world_kind", "start_ns")
        .sort("site", "start_ns", "episode_id")
        .collect()
    )
    if sites is not None:
        episodes = episodes.filter(pl.col("site").is_in(list(sites)))
    found = []
    for row in episodes.iter_rows(named=True):
        world = recorded_world(lake, [row["episode_id"]])
        found.append(TourEpisode(row["episode_id"], row["site"], world.kind, world.seed))
    return found


def open_tours(lake: Path, out: Path, sites: Sequence[str] | None) -> tuple[Path, Lake, list[TourEpisode]]:
    """The output folder (resolved), one version of the lake, and its tours of simulated buildings (of `sites`, or
    all), for a training set; ValueError where `out` exists or the lake has no such tours."""
    out = Path(out).resolve()
    if out.exists():
        raise ValueError(f"{out} exists already: give a new folder")
    source = Lake(lake)  # one version of the lake, read throughout and named in the manifest
    tours = tour_episodes(source, sites)
    if not tours:
        wanted = "" if sites is None else f" of sites {', '.join(sites)}"
        raise ValueError(f"the lake at {source.path} has no tours of simulated buildings{wanted}")
    return out, source, tours


@contextlib.contextmanager
def staged_dataset(out: Path, folders: Sequence[str]) -> Iterator[tuple[Path, Path]]:
    """(staging folder with `folders` in it, progress-marker folder): the staging folder becomes `out` when the
    block completes, and is removed whatever happens, so that a set cut short is never taken for a whole one."""
    staging = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    for folder in folders:
        (staging / folder).mkdir(parents=True)
    try:
        with tempfile.TemporaryDirectory(prefix="astra-dataset-") as progress_dir:
            yield staging, Path(progress_dir)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def label_frames(tour: TourEpisode, lake: Lake, config: GlobalDatasetConfig) -> pa.Table:
    """One episode's FRAMES rows: instants picked along its true trajectory, every camera's picture at each."""
    rig = read_rig(lake, tour.episode_id)
    frames = rig_frames(lake, tour.episode_id, rig)
    truth = read_trajectory(lake, tour.episode_id, GROUND_TRUTH_TOPIC)
    chosen = frames[select_keyframes(frames, truth, config.frames)].tolist()
    jpeg = read_pictures(lake, tour.episode_id, rig, chosen)
    instants = truth.at(np.array(chosen, np.int64))
    yaws = Rotation.from_quat(instants.quaternions).as_euler("zyx")[:, 0].tolist()
    views, rows = [], []
    for t, world_from_base, yaw in zip(chosen, instants.poses(), yaws, strict=True):
        x, y = (float(v) for v in world_from_base.translation[:2])
        for camera in rig:
            views.append(NodeView(f"{t}/{camera.name}", camera.name, (x, y, yaw), world_pose=(x, y, yaw)))
            world_from_camera = world_from_base * camera.base_from_camera
            position, quaternion = world_from_camera.translation, world_from_camera.rotation.quat
            rows.append(
                {
                    "site": tour.site,
                    "kind": tour.kind,
                    "world_seed": tour.world_seed,
                    "episode_id": tour.episode_id,
                    "t_ns": t,
                    "camera": camera.name,
                    "width": camera.width,
                    "height": camera.height,
                    "jpeg": jpeg[camera.name, t],
                    "k": list(camera.k),
                    "base_x": x,
                    "base_y": y,
                    "base_yaw": yaw,
                    **{f"camera_{n}": float(v) for n, v in zip("xyz", position, strict=True)},
                    **{f"camera_q{n}": float(v) for n, v in zip("xyzw", quaternion, strict=True)},
                }
            )
    sightings = _sightings(recorded_world(lake, [tour.episode_id]), rig, views, config.min_pixels)
    for row, view in zip(rows, views, strict=True):
        row["sightings"] = sightings.get(view.node_id, [])
    return pa.Table.from_pylist(rows, schema=FRAMES)


def _sightings(world: World, rig: Sequence[Any], views: list[NodeView], min_pixels: int) -> dict[str, list[dict]]:
    """node id -> the landmarks the segmentation render shows from that view, with their boxes."""
    config = replace(DEFAULT_ROBOT, camera_width=rig[0].width, camera_height=rig[0].height)
    with tempfile.TemporaryDirectory(prefix="astra-world-") as world_dir:
        write_world(world, Path(world_dir))
        extractor = AnnotatedLandmarkExtractor(world_dir, min_pixels=min_pixels, config=config, text_encoder=None)
        seen = extractor.extract(views).node_landmarks
    found: dict[str, list[dict]] = {}
    for row in seen.to_pylist():
        found.setdefault(row["node_id"], []).append(
            {
                "landmark_id": row["landmark_id"],
                **{f"box_{n}": int(row[f"box_{n}"]) for n in ("x0", "y0", "x1", "y1")},
                "visible_fraction": row["visible_fraction"],
            }
        )
    return found


def building_landmarks(site: str, world: World) -> pa.Table:
    """LANDMARKS rows of one building, from its annotation."""
    rows = [
        {
            "site": site,
            "landmark_id": lm.id,
            "kind": lm.kind,
            "category": lm.category,
            "text": lm.text,
            "color": lm.color,
            "material": lm.material,
            "function": lm.function,
            "room": world.room(lm.room_id).name,
            **{f"position_{n}": float(v) for n, v in zip("xyz", lm.box.center, strict=True)},
        }
        for lm in world.landmarks
    ]
    return pa.Table.from_pylist(rows, schema=LANDMARKS)


# --- the pipeline ----------------------------------------------------------------------------------


def _label_and_mark(
    tour: TourEpisode, lake: Lake, config: GlobalDatasetConfig, progress_dir: str
) -> tuple[TourEpisode, pa.Table]:
    table = label_frames(tour, lake, config)
    Path(progress_dir, tour.episode_id).touch()
    return tour, table


class LabelFrames(beam.PTransform):
    """TourEpisode -> (TourEpisode, its FRAMES table), one episode per element so that episodes spread over workers."""

    def __init__(self, lake: Lake, config: GlobalDatasetConfig, progress_dir: Path) -> None:
        super().__init__()
        self.lake, self.config, self.progress_dir = lake, config, str(progress_dir)

    def expand(self, tours: beam.PCollection[TourEpisode]) -> beam.PCollection[tuple[TourEpisode, pa.Table]]:
        return tours | beam.Map(_label_and_mark, self.lake, self.config, self.progress_dir)


def _write_frames(labelled: tuple[TourEpisode, pa.Table], folder: str) -> tuple[TourEpisode, int]:
    tour, table = labelled
    pq.write_table(table, Path(folder, FRAMES_DIR, f"{tour.episode_id}.parquet"))
    return tour, table.num_rows


class WriteFrames(beam.PTransform):
    """(TourEpisode, FRAMES table) -> (TourEpisode, rows written): each episode's frames to frames/<episode>.parquet."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = str(folder)

    def expand(self, labelled: beam.PCollection) -> beam.PCollection[tuple[TourEpisode, int]]:
        return labelled | beam.Map(_write_frames, self.folder)


def _describe_site(site: str, lake: Lake, episodes: dict[str, list[str]]) -> pa.Table:
    return building_landmarks(site, recorded_world(lake, episodes[site]))


def _write_dataset(
    written: list[tuple[TourEpisode, int]], landmarks: list[pa.Table], folder: str, manifest: dict[str, Any]
) -> None:
    table = pa.concat_tables(sorted(landmarks, key=lambda t: t["site"][0].as_py()))
    pq.write_table(table, Path(folder, LANDMARKS_FILE))
    sites: dict[str, dict[str, Any]] = {}
    order = {episode: i for i, episode in enumerate(manifest["episodes"])}  # by site, then by start
    for tour, rows in sorted(written, key=lambda w: order[w[0].episode_id]):
        site = sites.setdefault(
            tour.site, {"kind": tour.kind, "world_seed": tour.world_seed, "episodes": [], "frames": 0}
        )
        site["episodes"].append(tour.episode_id)
        site["frames"] += rows
    counts = {"frames": sum(rows for _, rows in written), "landmarks": table.num_rows}
    GlobalDatasetManifest(**manifest, sites=sites, counts=counts).write(Path(folder))


class WriteDataset(beam.PTransform):
    """Every episode written, and every building's landmarks -> landmarks.parquet and manifest.json."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        super().__init__()
        self.folder, self.manifest = str(folder), manifest

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection[None]:
        written, landmarks = inputs
        return (
            written
            | beam.combiners.ToList()
            | beam.Map(_write_dataset, beam.pvalue.AsList(landmarks), self.folder, self.manifest)
        )


def build_global_dataset(
    lake: Path,
    out: Path,
    sites: Sequence[str] | None = None,
    config: GlobalDatasetConfig = GlobalDatasetConfig(),
    progress: bool = True,
) -> DatasetSummary:
    """Label the tours of simulated buildings in the lake (of `sites`, or all) into a training set at `out`.

    Raises ValueError where the lake has no such tours or `out` exists already.
    """
    started = time.perf_counter()
    out, source, tours = open_tours(lake, out, sites)
    episodes: dict[str, list[str]] = {}
    for tour in tours:
        episodes.setdefault(tour.site, []).append(tour.episode_id)
    manifest = {
        "lake": str(source.path),
        "lake_version": source.version,
        "episodes": [t.episode_id for t in tours],
        "settings": asdict(config),
    }
    with staged_dataset(out, [FRAMES_DIR]) as (staging, progress_dir):

        def build(pipeline: beam.Pipeline) -> None:
            written = (
                pipeline
                | "ReadTourEpisodes" >> beam.Create(tours)
                | "LabelFrames" >> LabelFrames(source, config, progress_dir)
                | "WriteFrames" >> WriteFrames(staging)
            )
            landmarks = (
                pipeline
                | "ReadSites" >> beam.Create(sorted(episodes))
                | "DescribeBuildings" >> beam.Map(_describe_site, source, episodes)
            )
            _ = (written, landmarks) | "WriteDataset" >> WriteDataset(staging, manifest)

        with marker_progress(progress_dir, len(tours), "dataset global", progress):
            run_pipeline(build)
    written = GlobalDatasetManifest.read(out)
    return DatasetSummary(
        out=str(out),
        lake_version=source.version,
        sites=len(written.sites),
        episodes=len(written.episodes),
        frames=written.counts["frames"],
        landmarks=written.counts["landmarks"],
        seconds=time.perf_counter() - started,
    )
