"""What an episode recording carries besides messages: its MCAP metadata record and attachments."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from importlib.metadata import PackageNotFoundError, version

try:
    SOFTWARE_VERSION = version("astra-nav")  # what recorded an episode, stored in its metadata
except PackageNotFoundError:  # running from a source tree that was never installed
    SOFTWARE_VERSION = "0.0.0+source"
EPISODE_METADATA_NAME = "astra.episode"
WORLD_ATTACHMENT_NAME = "world.json"
WORLD_ATTACHMENT_MEDIA_TYPE = "application/json"


@dataclass(frozen=True)
class EpisodeMetadata:
    """Stored as the MCAP metadata record `astra.episode` (string values, per the MCAP spec).

    Fields with a default came later: recordings made before them read with that default.
    """

    robot_id: str
    site: str
    world_kind: str
    world_seed: int
    episode_seed: int
    software_version: str
    camera_width: int
    camera_height: int
    sensor_errors: str = "{}"  # JSON: the noise figures and per-episode draws (sim.robot.SensorErrors)

    def to_record(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_record(cls, record: dict[str, str]) -> EpisodeMetadata:
        kwargs = {}
        for f in fields(cls):
            if f.name not in record and f.default is not MISSING:
                continue
            kwargs[f.name] = int(record[f.name]) if f.type == "int" else record[f.name]
        return cls(**kwargs)
