"""LeRobot v3.0 export: the files read back with pyarrow and PyAV agree with the lake they came from."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from datasets.lake import Lake, LakeError
from datasets.lake_tables import write_partition
from datasets.lerobot import _FeatureStats, export_lerobot
from pipelines.ingest import ingest
from schemas import lerobot as fmt
from schemas.topics import BY_OUTPUT, CAMERAS
from tests.conftest import T0

MS = 1_000_000
FPS = 10
WIDTH, HEIGHT = 32, 24
# episode id -> (site, collisions, camera ticks, ticks the rear_right camera dropped, has /cmd_vel)
EPISODES = {
    "ep-a": ("office-0", 0, 24, (), True),
    "ep-b": ("office-0", 2, 12, (), True),
    "ep-c": ("warehouse-1", 0, 17, (8,), True),
    "ep-d": ("office-0", 0, 10, tuple(range(10)), True),
    "ep-e": ("office-0", 0, 10, (), False),
}
FILTER = "collisions = 0"
EXPORTED = ["ep-a", "ep-c"]  # in recording order; ep-d has no rear_right images, ep-e no commands


def _picture(tick: int, camera: int) -> np.ndarray:
    """A smooth picture that differs per tick and camera, so decoded frames can be matched to their source."""
    rgb = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    rgb[..., 0] = (10 + 24 * tick) % 256
    rgb[..., 1] = 60 + 60 * camera
    rgb[..., 2] = np.linspace(0, 250, WIDTH, dtype=np.uint8)
    return rgb


def _jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _rgb(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def _write_episode(lake: Path, number: int, episode_id: str) -> None:
    """Cameras at 10 Hz a few ms apart, /odom at 50 Hz from just before them, /cmd_vel from 0.35 s in,
    and the ground truth and expert topics beside them, which the export must ignore."""
    site, collisions, ticks, dropped, commanded = EPISODES[episode_id]
    start = T0 + number * 60_000 * MS
    end = start + ticks * 100 * MS
    write_partition(
        lake,
        "episodes",
        episode_id,
        {
            "site": [site],
            "robot_id": ["astra-sim-01"],
            "world_kind": [site.split("-")[0]],
            "start_ns": [start],
            "end_ns": [end],
            "duration_s": [(end - start) / 1e9],
            "collisions": [collisions],
        },
    )
    shots = [
        (c, camera, tick)
        for c, camera in enumerate(CAMERAS)
        for tick in range(ticks)
        if not (camera == "rear_right" and tick in dropped)
    ]
    write_partition(
        lake,
        "images",
        episode_id,
        {
            "t_ns": [start + tick * 100 * MS + (1 - c) * 2 * MS for c, _, tick in shots],
            "topic": [BY_OUTPUT[f"image_{camera}"].ros_topic for _, camera, _ in shots],
            "format": ["jpeg"] * len(shots),
            "data": [_jpeg(_picture(tick, c)) for c, _, tick in shots],
        },
    )

    t = start - 5 * MS + np.arange(ticks * 5 + 5) * 20 * MS
    s = (t - start) / 1e9
    yaw = 2.5 * np.sin(s)
    odom = {
        "t_ns": t,
        "position_x": 0.3 * s,
        "position_y": number - 0.1 * s**2,
        "position_z": 0 * s,
        "orientation_x": 0 * s,
        "orientation_y": 0 * s,
        "orientation_z": np.sin(yaw / 2),
        "orientation_w": np.cos(yaw / 2),
        "linear_x": 0.3 + 0.01 * s,
        "angular_z": np.cos(s),
    }
    truth = {**odom, "position_x": odom["position_x"] + 100}
    write_partition(
        lake,
        "odometry",
        episode_id,
        {
            "topic": [BY_OUTPUT["odom"].ros_topic] * len(t) + [BY_OUTPUT["ground_truth"].ros_topic] * len(t),
            **{name: np.concatenate([odom[name], truth[name]]).tolist() for name in odom},
        },
    )

    c = start + 350 * MS + np.arange(ticks * 5 if commanded else 0) * 20 * MS
    write_partition(
        lake,
        "commands",
        episode_id,
        {
            "t_ns": [*c.tolist(), *c.tolist()],
            "topic": [BY_OUTPUT["cmd_vel"].ros_topic] * len(c) + [BY_OUTPUT["expert_cmd_vel"].ros_topic] * len(c),
            "linear_x": [*(0.5 + 0.001 * np.arange(len(c))).tolist(), *[9.0] * len(c)],
            "angular_z": [*(-0.2 + 0.002 * np.arange(len(c))).tolist(), *[9.0] * len(c)],
        },
    )


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lake")
    for number, episode_id in enumerate(EPISODES):
        _write_episode(path, number, episode_id)
    return path


@pytest.fixture(scope="module")
def exported(lake: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("export") / "office"
    summary = export_lerobot(lake, FILTER, out, fps=FPS, progress=False)
    return out, summary.to_dict()


def _episodes(root: Path) -> list[dict]:
    return pq.read_table(root / fmt.EPISODES_PATH.format(chunk_index=0, file_index=0)).to_pylist()


def _data(root: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(root.glob("data/*/*.parquet")))


def _lake_rows(lake: Path, table: str, episode_id: str, topic: str) -> dict[str, np.ndarray]:
    frame = Lake(lake).table(table).filter(episode_id=episode_id, topic=topic).sort("t_ns").collect()
    return {name: frame[name].to_numpy() for name in frame.columns if name not in ("topic", "episode_id")}


def _latest(times: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Index of the last row at or before each tick (-1: none yet)."""
    return np.searchsorted(times, ticks, side="right") - 1


def _ticks(episode: dict) -> np.ndarray:
    return episode[fmt.SOURCE_T0_COLUMN] + np.arange(episode["length"]) * 1_000_000_000 // FPS


def _stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of frames x channels, computed directly."""
    return {"min": values.min(0), "max": values.max(0), "mean": values.mean(0), "std": values.std(0)}


def _episode_values(root: Path, lake: Path) -> dict[str, list[np.ndarray]]:
    """Each feature's values (samples x channels) in each exported episode: the data rows, and for a camera the
    pixels, 0..1, of the lake image nearest each frame's tick."""
    data = _data(root)
    episodes = _episodes(root)
    values = {}
    for name in fmt.DATA_SCHEMA.names:
        column = np.array(data[name].to_pylist(), dtype=np.float64).reshape(data.num_rows, -1)
        values[name] = [column[e["dataset_from_index"] : e["dataset_to_index"]] for e in episodes]
    for camera in CAMERAS:
        values[fmt.image_key(camera)] = []
        for episode in episodes:
            images = _lake_rows(
                lake, "images", episode[fmt.SOURCE_EPISODE_COLUMN], BY_OUTPUT[f"image_{camera}"].ros_topic
            )
            nearest = np.abs(images["t_ns"][None, :] - _ticks(episode)[:, None]).argmin(axis=1)
            pixels = [_rgb(images["data"][i]).reshape(-1, 3) / 255 for i in nearest]
            values[fmt.image_key(camera)].append(np.concatenate(pixels))
    return values


def _decode(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def test_info_tasks_and_summary(exported: tuple[Path, dict]) -> None:
    root, summary = exported
    info = json.loads((root / fmt.INFO_PATH).read_text())
    episodes = _episodes(root)
    frames = sum(e["length"] for e in episodes)
    assert info["codebase_version"] == "v3.0"
    assert summary["lake_version"] is not None and info["source"]["lake_version"] == summary["lake_version"]
    assert info["robot_type"] == fmt.ROBOT_TYPE and info["fps"] == FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, frames, 2)
    assert info["splits"] == {"train": "0:2"}
    assert (info["chunks_size"], info["data_files_size_in_mb"], info["video_files_size_in_mb"]) == (1000, 100, 500)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    features = info["features"]
    assert features["observation.state"] == {
        "dtype": "float32",
        "shape": [5],
        "names": ["x", "y", "yaw", "v", "omega"],
        "fps": FPS,
    }
    assert features["action"]["names"] == ["linear_x", "angular_z"] and features["action"]["shape"] == [2]
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert features[name]["shape"] == [1]
    for camera in CAMERAS:
        video = features[f"observation.images.{camera}"]
        assert video["dtype"] == "video" and video["shape"] == [HEIGHT, WIDTH, 3]
        assert video["info"]["video.codec"] == "h264" and video["info"]["video.pix_fmt"] == "yuv420p"
        assert video["info"]["video.fps"] == FPS and video["info"]["has_audio"] is False

    tasks = pq.read_table(root / fmt.TASKS_PATH)
    assert tasks.to_pydict() == {
        "task_index": [0, 1],
        "task": ["tour every room of office-0", "tour every room of warehouse-1"],
    }
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    assert [e["tasks"] for e in episodes] == [["tour every room of office-0"], ["tour every room of warehouse-1"]]

    assert summary["episodes"] == 2 and summary["frames"] == frames and summary["videos"] == 3
    assert summary["bytes"] == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert summary["skipped"] == {"ep-d": "no images from camera rear_right", "ep-e": "no /cmd_vel commands"}
    assert not list(root.parent.glob(".*")), "the staging folder is gone"


def _check_frames(root: Path, lake: Path) -> None:
    """Data rows: indices and ranges agree with the episodes, timestamps are i / fps, and state and action are
    the lake's latest /odom and /cmd_vel at each frame's tick."""
    data = _data(root)
    assert data.schema == fmt.DATA_SCHEMA
    columns = data.to_pydict()
    assert columns["index"] == list(range(data.num_rows))
    episodes = _episodes(root)
    assert episodes[0]["dataset_from_index"] == 0 and episodes[-1]["dataset_to_index"] == data.num_rows
    for index, episode in enumerate(episodes):
        episode_id = episode[fmt.SOURCE_EPISODE_COLUMN]
        rows = slice(episode["dataset_from_index"], episode["dataset_to_index"])
        assert episode["episode_index"] == index and episode["length"] == rows.stop - rows.start
        assert index == 0 or rows.start == episodes[index - 1]["dataset_to_index"]
        assert set(columns["episode_index"][rows]) == {index}
        assert columns["frame_index"][rows] == list(range(episode["length"]))
        timestamps = np.array(columns["timestamp"][rows])
        np.testing.assert_array_equal(timestamps, (np.arange(episode["length"]) / FPS).astype(np.float32))
        assert np.all(np.diff(timestamps) > 0)

        ticks = _ticks(episode)
        odom = _lake_rows(lake, "odometry", episode_id, BY_OUTPUT["odom"].ros_topic)
        at = _latest(odom["t_ns"], ticks)
        assert np.all(at >= 0)
        state = np.array(columns["observation.state"][rows])
        pose = [odom[name][at] for name in ("position_x", "position_y", "linear_x", "angular_z")]
        np.testing.assert_allclose(state[:, [0, 1, 3, 4]], np.column_stack(pose), rtol=1e-6, atol=1e-6)
        yaw = 2 * np.arctan2(odom["orientation_z"][at], odom["orientation_w"][at])  # planar quaternions
        np.testing.assert_allclose(np.angle(np.exp(1j * (state[:, 2] - yaw))), 0, atol=1e-6)

        commands = _lake_rows(lake, "commands", episode_id, BY_OUTPUT["cmd_vel"].ros_topic)
        at = _latest(commands["t_ns"], ticks)
        latest = np.column_stack([commands["linear_x"][at], commands["angular_z"][at]])
        np.testing.assert_allclose(columns["action"][rows], np.where((at >= 0)[:, None], latest, 0.0), atol=1e-6)


def _check_videos(root: Path, lake: Path, tolerance: float) -> None:
    """Each camera's video: one frame per data row at from_timestamp + i / fps, each within `tolerance` (mean
    absolute difference, 0..255) of the lake image nearest the frame's tick."""
    episodes = _episodes(root)
    for camera in CAMERAS:
        key = fmt.image_key(camera)
        frames = _decode(root / fmt.VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0))
        assert len(frames) == sum(e["length"] for e in episodes)
        assert frames[0].format.name == "yuv420p"
        np.testing.assert_allclose([f.time for f in frames], np.arange(len(frames)) / FPS, atol=1e-6)
        for episode in episodes:
            assert episode[fmt.video_column(key, "from_timestamp")] == episode["dataset_from_index"] / FPS
            assert episode[fmt.video_column(key, "to_timestamp")] == episode["dataset_to_index"] / FPS
            images = _lake_rows(
                lake, "images", episode[fmt.SOURCE_EPISODE_COLUMN], BY_OUTPUT[f"image_{camera}"].ros_topic
            )
            nearest = np.abs(images["t_ns"][None, :] - _ticks(episode)[:, None]).argmin(axis=1)
            for i, image in enumerate(nearest):
                decoded = frames[episode["dataset_from_index"] + i].to_ndarray(format="rgb24").astype(float)
                error = np.abs(decoded - _rgb(images["data"][image])).mean()
                assert error < tolerance, (camera, episode["episode_index"], i, error)


def test_frames_match_the_lake(exported: tuple[Path, dict], lake: Path) -> None:
    root, _ = exported
    _check_frames(root, lake)
    episodes = _episodes(root)
    assert [e[fmt.SOURCE_EPISODE_COLUMN] for e in episodes] == EXPORTED
    task_index = _data(root)["task_index"].to_numpy()
    assert [set(task_index[e["dataset_from_index"] : e["dataset_to_index"]]) for e in episodes] == [{0}, {1}]
    first_command = _lake_rows(lake, "commands", "ep-a", BY_OUTPUT["cmd_vel"].ros_topic)["t_ns"][0]
    assert _ticks(episodes[0])[0] < first_command, "the fixture has frames before the first command"


def test_videos_hold_the_nearest_image_of_every_tick(exported: tuple[Path, dict], lake: Path) -> None:
    root, _ = exported
    _check_videos(root, lake, tolerance=4)
    for episode in _episodes(root):
        _, _, ticks, dropped, _ = EPISODES[episode[fmt.SOURCE_EPISODE_COLUMN]]
        assert episode["length"] == ticks, "one frame per camera tick, a dropped image filled by its neighbour"
        counts = Lake(lake).sql(
            f"SELECT topic, count(*) AS n FROM images WHERE episode_id = '{episode[fmt.SOURCE_EPISODE_COLUMN]}' "
            "GROUP BY topic"
        )
        assert dict(counts.iter_rows()) == {
            BY_OUTPUT[f"image_{camera}"].ros_topic: ticks - (len(dropped) if camera == "rear_right" else 0)
            for camera in CAMERAS
        }


def test_stats_match_the_exported_values(exported: tuple[Path, dict], lake: Path) -> None:
    root, _ = exported
    stats = json.loads((root / fmt.STATS_PATH).read_text())
    episodes = _episodes(root)
    frames = sum(e["length"] for e in episodes)
    values = _episode_values(root, lake)
    for name in fmt.DATA_SCHEMA.names:
        parts = values[name]
        for stat, value in _stats(np.concatenate(parts)).items():
            np.testing.assert_allclose(stats[name][stat], value, rtol=1e-9, atol=1e-9, err_msg=f"{name} {stat}")
        assert stats[name]["count"] == [frames]
        for episode, part in zip(episodes, parts, strict=True):
            np.testing.assert_allclose(episode[fmt.stats_column(name, "mean")], part.mean(0), rtol=1e-9)
            assert episode[fmt.stats_column(name, "count")] == [len(part)]

    for camera in CAMERAS:
        key = fmt.image_key(camera)
        assert set(stats[key]) == set(fmt.STAT_NAMES) and stats[key]["count"] == [frames]
        for stat, value in _stats(np.concatenate(values[key])).items():
            assert np.array(stats[key][stat]).shape == (3, 1, 1)
            np.testing.assert_allclose(np.array(stats[key][stat]).ravel(), value, atol=1e-9, err_msg=f"{key} {stat}")


def _assert_quantiles_ordered(stats: dict[str, list], where: str) -> None:
    """All five quantiles, shaped like min, with min <= q01 <= q10 <= q50 <= q90 <= q99 <= max."""
    chain = [np.array(stats[name]) for name in ("min", *fmt.QUANTILE_NAMES, "max")]
    assert {value.shape for value in chain} == {chain[0].shape}, where
    assert np.all(np.diff(np.stack(chain), axis=0) >= 0), where


def test_quantiles_are_present_ordered_and_right(exported: tuple[Path, dict], lake: Path) -> None:
    """QUANTILES normalization needs q01 ... q99. An episode's are np.quantile over its frames (pixels for a
    camera); the dataset's are their mean weighted by each episode's frames, as LeRobot aggregates them."""
    root, _ = exported
    stats = json.loads((root / fmt.STATS_PATH).read_text())
    episodes = _episodes(root)
    values = _episode_values(root, lake)
    assert set(stats) == set(values)
    frames = np.array([e["length"] for e in episodes])
    for key, parts in values.items():
        _assert_quantiles_ordered(stats[key], f"{key} in stats.json")
        quantiles = np.stack([np.quantile(part, fmt.QUANTILES, axis=0) for part in parts])
        for episode, expected in zip(episodes, quantiles, strict=True):
            got = {stat: episode[fmt.stats_column(key, stat)] for stat in fmt.STAT_NAMES}
            _assert_quantiles_ordered(got, f"{key} in episode {episode['episode_index']}")
            for name, value in zip(fmt.QUANTILE_NAMES, expected, strict=True):
                np.testing.assert_allclose(np.ravel(got[name]), value, atol=1e-9, err_msg=f"{key} {name}")
        weighted = np.tensordot(frames, quantiles, axes=1) / frames.sum()
        for name, value in zip(fmt.QUANTILE_NAMES, weighted, strict=True):
            np.testing.assert_allclose(np.ravel(stats[key][name]), value, atol=1e-9, err_msg=f"{key} {name}")


def test_merged_quantiles_stay_within_the_extremes() -> None:
    """The frame-weighted mean of a constant 0.1 over episodes of 1 and 2 frames rounds past 0.1."""
    assert (0.1 * 1 + 0.1 * 2) / 3 > 0.1, "the rounding this test relies on"
    one, two = (_FeatureStats.of(np.full((n, 1), 0.1), n) for n in (1, 2))
    stats = (one + two).as_lerobot(image=False)
    assert [stats[name] for name in fmt.QUANTILE_NAMES] == [[0.1]] * len(fmt.QUANTILES)


def test_resamples_at_a_lower_fps(lake: Path, tmp_path: Path) -> None:
    summary = export_lerobot(lake, "episode_id = 'ep-a'", tmp_path / "five", fps=5, progress=False)
    (episode,) = _episodes(tmp_path / "five")
    assert summary.frames == episode["length"] == 12  # 24 images over 2.3 s, every other one
    timestamps = _data(tmp_path / "five")["timestamp"].to_numpy()
    np.testing.assert_array_equal(timestamps, (np.arange(12) / 5).astype(np.float32))
    video = tmp_path / "five" / fmt.VIDEO_PATH.format(video_key=fmt.image_key("front"), chunk_index=0, file_index=0)
    frames = _decode(video)
    assert len(frames) == 12
    np.testing.assert_allclose([f.time for f in frames], np.arange(12) / 5, atol=1e-6)


def test_files_roll_over_at_their_size_caps(lake: Path, tmp_path: Path) -> None:
    limits = fmt.FileLimits(chunks_size=2, data_files_size_in_mb=1e-6, video_files_size_in_mb=1e-6)
    root = tmp_path / "small"
    export_lerobot(lake, "true", root, fps=FPS, progress=False, limits=limits)
    episodes = _episodes(root)
    assert [e[fmt.SOURCE_EPISODE_COLUMN] for e in episodes] == ["ep-a", "ep-b", "ep-c"]
    places = [(e["data/chunk_index"], e["data/file_index"]) for e in episodes]
    assert places == [(0, 0), (0, 1), (1, 0)]
    for episode in episodes:
        path = root / fmt.DATA_PATH.format(
            chunk_index=episode["data/chunk_index"], file_index=episode["data/file_index"]
        )
        rows = pq.read_table(path)
        assert rows["index"].to_pylist() == list(range(episode["dataset_from_index"], episode["dataset_to_index"]))
        for camera in CAMERAS:
            key = fmt.image_key(camera)
            video = root / fmt.VIDEO_PATH.format(
                video_key=key,
                chunk_index=episode[fmt.video_column(key, "chunk_index")],
                file_index=episode[fmt.video_column(key, "file_index")],
            )
            assert episode[fmt.video_column(key, "from_timestamp")] == 0.0
            assert len(_decode(video)) == episode["length"]
    info = json.loads((root / fmt.INFO_PATH).read_text())
    assert info["chunks_size"] == 2 and info["data_files_size_in_mb"] == 1e-6


def test_no_filter_exports_every_episode(lake: Path, tmp_path: Path) -> None:
    summary = export_lerobot(lake, None, tmp_path / "all", fps=FPS, progress=False)
    assert [e[fmt.SOURCE_EPISODE_COLUMN] for e in _episodes(tmp_path / "all")] == ["ep-a", "ep-b", "ep-c"]
    assert summary.episodes == 3 and set(summary.skipped) == {"ep-d", "ep-e"}
    write_partition(
        tmp_path / "no-episodes", "commands", "ep-a", {"t_ns": [T0], "topic": [BY_OUTPUT["cmd_vel"].ros_topic]}
    )
    with pytest.raises(LakeError, match="episodes does not exist"):
        export_lerobot(tmp_path / "no-episodes", None, tmp_path / "out", progress=False)


@pytest.mark.parametrize(
    ("episodes_filter", "message"),
    [
        ("collisions = = 0", "bad episodes filter"),
        ("no_such_column = 1", "bad episodes filter"),
        ("1 = 1; DROP TABLE episodes", "bad episodes filter"),
        ("site = 'mars-0'", "no episode matches"),
        ("episode_id = 'ep-d'", "none of the 1 episodes"),
    ],
)
def test_bad_filters_are_value_errors(lake: Path, tmp_path: Path, episodes_filter: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        export_lerobot(lake, episodes_filter, tmp_path / "out", progress=False)
    assert not list(tmp_path.iterdir()), "nothing is left behind"


def test_refuses_a_bad_fps_a_full_output_folder_and_a_missing_lake(lake: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fps"):
        export_lerobot(lake, FILTER, tmp_path / "out", fps=0, progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        export_lerobot(lake, FILTER, tmp_path / "full", progress=False)
    with pytest.raises(LakeError):
        export_lerobot(tmp_path / "no-lake", FILTER, tmp_path / "out", progress=False)


def test_a_recorded_tour_exports_one_frame_per_camera_image(office_world: Path, tmp_path: Path) -> None:
    """The real chain: `astra record` (dora, MuJoCo) -> ingest (Beam) -> export."""
    venv = Path(sys.executable).parent
    record = [venv / "astra", "record", "--world", office_world, "--seconds", "6", "--out", tmp_path / "logs"]
    subprocess.run(
        [*map(str, record), "--camera-width", "96", "--camera-height", "72"],
        env={**os.environ, "PATH": f"{venv}{os.pathsep}{os.environ['PATH']}"},
        check=True,
        capture_output=True,
    )
    lake, out = tmp_path / "lake", tmp_path / "dataset"
    ingest([tmp_path / "logs"], lake, progress=False)
    summary = export_lerobot(lake, "site = 'office-0' AND collisions = 0", out, progress=False)
    counts = Lake(lake).sql(
        "SELECT count(*) AS n FROM images WHERE topic LIKE '/camera/%/image/compressed' GROUP BY topic"
    )
    assert (summary.episodes, summary.skipped) == (1, {})
    assert counts["n"].to_list() == [summary.frames] * len(CAMERAS)
    _check_frames(out, lake)
    _check_videos(out, lake, tolerance=6)
