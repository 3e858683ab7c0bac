"""Every per-run setting of the dora nodes, read from ASTRA_* environment variables; the README lists them.

`astra record` sets them for each episode; by hand, export them before `dora run`. A dataflow's `env:`
would override the caller's environment, so the YAML files set only what is a property of the graph
(ASTRA_EPISODE_ACKS).

Relative paths resolve against the directory `dora run` was started from (the caller's $PWD), as the
paths given to `astra` resolve against the working directory. dora starts each node in its YAML's
folder, so the node's own working directory would not do.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from schemas.robot import RobotConfig
from schemas.topics import BY_OUTPUT
from sim.estop import EstopSchedule


class ConfigError(ValueError):
    """An ASTRA_* variable holds a value the nodes cannot use."""


def caller_dir() -> Path:
    return Path(os.environ.get("PWD") or os.getcwd())


def _resolved(path: Path) -> Path:
    return path if path.is_absolute() else caller_dir() / path


def env_path(name: str, default: str) -> Path:
    return _resolved(Path(os.environ.get(name) or default))


def _number(name: str, default: float, kind: type = float, positive: bool = False) -> float:
    text = os.environ.get(name, "")
    try:
        value = kind(text) if text else default
    except ValueError:
        raise ConfigError(f"{name} must be a{'n integer' if kind is int else ' number'}, got {text!r}") from None
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{name} must be {'> 0' if positive else '>= 0'}, got {text!r}")
    return value


def world_dir() -> Path:
    """ASTRA_WORLD: the folder `astra sim world` wrote."""
    return env_path("ASTRA_WORLD", "data/worlds/office-0")


def episode_seed() -> int:
    """ASTRA_SEED: seeds sensor noise and the expert's tour."""
    return int(_number("ASTRA_SEED", 0, int))


def episode_seconds() -> float:
    """ASTRA_SECONDS: simulated seconds before the sensor ends the episode; 0 runs until stopped."""
    return _number("ASTRA_SECONDS", 0.0)


def episode_acks() -> set[str]:
    """ASTRA_EPISODE_ACKS: sensor inputs that must answer `episode_end` before it exits (comma-separated)."""
    return {ack for ack in os.environ.get("ASTRA_EPISODE_ACKS", "").split(",") if ack}


def _default_log(site: str, suffix: str) -> str:
    return f"data/logs/{site}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}{suffix}"


def mcap_path(site: str) -> Path:
    """ASTRA_MCAP: the recording's file."""
    return env_path("ASTRA_MCAP", _default_log(site, ".mcap"))


def rrd_path(site: str) -> tuple[Path | None, bool]:
    """ASTRA_RRD: the Rerun file to save, and whether it was chosen for want of a display.

    Unset, a viewer is spawned (None) where there is a display, else a file beside the default MCAP is saved.
    """
    if os.environ.get("ASTRA_RRD"):
        return env_path("ASTRA_RRD", ""), False
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None, False
    return _resolved(Path(_default_log(site, ".rrd"))), True


def expert_hz() -> float:
    """ASTRA_EXPERT_HZ: the expert's command rate, in Hz of robot time."""
    return _number("ASTRA_EXPERT_HZ", BY_OUTPUT["expert_cmd_vel"].rate_hz, positive=True)


def actuation_hz() -> float:
    """ASTRA_ACTUATION_HZ: the rate actuation sends cmd_vel at, in Hz of robot time."""
    return _number("ASTRA_ACTUATION_HZ", BY_OUTPUT["cmd_vel"].rate_hz, positive=True)


def estop_schedule() -> EstopSchedule:
    """ASTRA_ESTOP: when the simulated e-stop button is held, "START-END[,...]" in seconds of the episode."""
    try:
        return EstopSchedule.parse(os.environ.get("ASTRA_ESTOP", ""))
    except ValueError as exc:
        raise ConfigError(f"ASTRA_ESTOP: {exc}") from None


def robot_config() -> RobotConfig:
    """ASTRA_ROBOT_ID, ASTRA_CAMERA_WIDTH, ASTRA_CAMERA_HEIGHT."""
    return RobotConfig(
        robot_id=os.environ.get("ASTRA_ROBOT_ID") or RobotConfig.robot_id,
        camera_width=int(_number("ASTRA_CAMERA_WIDTH", RobotConfig.camera_width, int, positive=True)),
        camera_height=int(_number("ASTRA_CAMERA_HEIGHT", RobotConfig.camera_height, int, positive=True)),
    )


def sensor_backend() -> str:
    """ASTRA_SENSOR: "sim" (default) runs the simulator; "replay" plays ASTRA_REPLAY's recording into the graph."""
    backend = os.environ.get("ASTRA_SENSOR") or "sim"
    if backend not in ("sim", "replay"):
        raise ConfigError(f"ASTRA_SENSOR must be sim or replay, got {backend!r}")
    return backend


def replay_path() -> Path:
    """ASTRA_REPLAY: the MCAP the replay sensor plays."""
    if not os.environ.get("ASTRA_REPLAY"):
        raise ConfigError("ASTRA_SENSOR=replay needs ASTRA_REPLAY, the MCAP to play")
    path = env_path("ASTRA_REPLAY", "")
    if not path.is_file():
        raise ConfigError(f"ASTRA_REPLAY: no file at {path}")
    return path


def start_pose() -> tuple[float, float, float] | None:
    """ASTRA_START: "x,y,yaw" where the simulated robot starts, in the world frame; unset, at the dock."""
    text = os.environ.get("ASTRA_START", "")
    if not text:
        return None
    try:
        x, y, yaw = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"ASTRA_START must be x,y,yaw in metres and radians, got {text!r}") from None
    return x, y, yaw


def sim_tf() -> bool:
    """ASTRA_SIM_TF: whether the sensor publishes /tf, the simulator's true map -> odom and its wheel odometry
    ("1", the default for recording), or leaves /tf to the navigation stack ("0", as dataflow.yml sets it)."""
    return _flag("ASTRA_SIM_TF", True)


def blind_agents() -> bool:
    """ASTRA_BLIND_AGENTS: whether simulated people and carts walk into a robot in their way ("1", the stress test)
    or stop short of it ("0", the default)."""
    return _flag("ASTRA_BLIND_AGENTS", False)


def viz_map() -> bool:
    """ASTRA_VIZ_MAP: whether the viz node draws ASTRA_MAP's graph ("1" in dataflow.yml) or not ("0")."""
    return _flag("ASTRA_VIZ_MAP", False)


def _flag(name: str, default: bool) -> bool:
    text = os.environ.get(name, "")
    if text not in ("", "0", "1"):
        raise ConfigError(f"{name} must be 0 or 1, got {text!r}")
    return default if not text else text == "1"


def map_dir() -> Path:
    """ASTRA_MAP: the map `astra map build` wrote (encrypted maps need ASTRA_MAP_KEY)."""
    return env_path("ASTRA_MAP", "data/maps/office-0")


def global_localization(given: str | None = None) -> str:
    """ASTRA_GLOBAL (or `given`, which overrides it): how `global` localizes: classical, astra (Astra-Global end to
    end) or hybrid (its coarse stage, then the classical fine stage)."""
    from datasets.navigation import LOCALIZATION

    value = given or os.environ.get("ASTRA_GLOBAL") or "classical"
    if value not in LOCALIZATION:
        raise ConfigError(f"ASTRA_GLOBAL must be one of {', '.join(LOCALIZATION)}, got {value!r}")
    return value


def local_planner(given: str | None = None) -> str:
    """ASTRA_LOCAL (or `given`, which overrides it): what `local` plans with: classical (the DWA) or astra
    (Astra-Local's learned planner, with the classical one as its fallback)."""
    from models.astra_local.serving import LOCAL_PLANNERS

    value = given or os.environ.get("ASTRA_LOCAL") or "classical"
    if value not in LOCAL_PLANNERS:
        raise ConfigError(f"ASTRA_LOCAL must be one of {', '.join(LOCAL_PLANNERS)}, got {value!r}")
    return value


def relocalize_s() -> float:
    """ASTRA_RELOCALIZE_S: seconds of robot time between periodic relocalizations (1-5 s)."""
    value = _number("ASTRA_RELOCALIZE_S", 3.0, positive=True)
    if not 1.0 <= value <= 5.0:
        raise ConfigError(f"ASTRA_RELOCALIZE_S must be between 1 and 5 seconds, got {value}")
    return value


def goal_text() -> str:
    """ASTRA_GOAL: the mission's goal in words, e.g. "take me to the kitchen"."""
    text = os.environ.get("ASTRA_GOAL", "").strip()
    if not text:
        raise ConfigError("ASTRA_GOAL is empty: give the mission's goal in words")
    return text
