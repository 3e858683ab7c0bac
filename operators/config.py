"""Node configuration from the environment.

`astra record` and users set these per run; dataflow YAML `env:` would override the caller's
environment, so the YAML leaves them out. Relative paths resolve against the project root,
because dora starts nodes in the YAML's folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from schemas.robot import RobotConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def env_path(name: str, default: str) -> Path:
    path = Path(os.environ.get(name, default))
    return path if path.is_absolute() else PROJECT_ROOT / path


def world_dir() -> Path:
    return env_path("ASTRA_WORLD", "data/worlds/office-0")


def episode_seed() -> int:
    return int(os.environ.get("ASTRA_SEED", "0"))


def robot_config() -> RobotConfig:
    return RobotConfig(
        robot_id=os.environ.get("ASTRA_ROBOT_ID", RobotConfig.robot_id),
        camera_width=int(os.environ.get("ASTRA_CAMERA_WIDTH", RobotConfig.camera_width)),
        camera_height=int(os.environ.get("ASTRA_CAMERA_HEIGHT", RobotConfig.camera_height)),
    )
