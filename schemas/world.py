"""The `world.json` format: a procedurally generated building and its semantics.

A world is a single floor in the `map` frame (x east, y north, metres, REP-103).
Every static obstacle is an axis-aligned box, which keeps both the MJCF and the
occupancy grid exact and cheap to build.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

WORLD_FORMAT_VERSION = 1
WORLD_KINDS = ("office", "warehouse", "home", "hospital")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box: centre and half-extents in metres."""

    center: tuple[float, float, float]
    half_size: tuple[float, float, float]

    @property
    def footprint(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) on the floor."""
        (cx, cy, _), (hx, hy, _) = self.center, self.half_size
        return (cx - hx, cy - hy, cx + hx, cy + hy)


@dataclass(frozen=True)
class Room:
    id: str
    name: str  # "Radiology", "Aisle 3", "Kitchen"
    function: str  # "charging bay", "nurse station", "resting area"
    kind: str  # "room" | "corridor" | "aisle"
    bounds: tuple[float, float, float, float]  # free floor (xmin, ymin, xmax, ymax)

    @property
    def center(self) -> tuple[float, float]:
        xmin, ymin, xmax, ymax = self.bounds
        return ((xmin + xmax) / 2, (ymin + ymax) / 2)


@dataclass(frozen=True)
class Door:
    id: str
    rooms: tuple[str, str]
    center: tuple[float, float]
    width: float


@dataclass(frozen=True)
class Wall:
    id: str
    box: Box
    material: str  # material name in world.xml, backed by a texture in textures/


_SIGN_FUNCTION = "marks the entrance to {room}: {function}"


def sign_function(room: str, room_function: str) -> str:
    """A name sign's function: the room it leads to, and what that room is for."""
    return _SIGN_FUNCTION.format(room=room, function=room_function)


def room_function_of_sign(function: str, room: str) -> str:
    """What the room a sign names is for, from the sign's function (the function itself if not of that form)."""
    lead = _SIGN_FUNCTION.format(room=room, function="")
    return function.removeprefix(lead)


@dataclass(frozen=True)
class Landmark:
    """A sign or an object with semantics, as the annotated semantic map would hold it."""

    id: str
    kind: str  # "sign" | "object"
    category: str  # "room sign", "sofa", "charging dock", "shelf", ...
    text: str  # rendered text for signs, "" for objects
    color: str
    material: str
    function: str
    room_id: str
    box: Box
    yaw: float  # facing direction in rad (signs face into their room)
    collides: bool  # wall-mounted signs do not block the floor


@dataclass(frozen=True)
class Agent:
    """A dynamic obstacle that walks a closed polyline at constant speed."""

    id: str
    kind: str  # "person" | "cart"
    waypoints: tuple[tuple[float, float], ...]
    speed: float
    radius: float


@dataclass(frozen=True)
class GridSpec:
    """Occupancy-grid parameters: cell (row, col) covers y, x from the origin corner."""

    resolution: float
    origin: tuple[float, float]  # world (x, y) of the corner of cell (0, 0)
    shape: tuple[int, int]  # (rows along y, cols along x)

    def world_to_cell(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) world x, y -> (..., 2) integer row, col (unclipped)."""
        xy = np.asarray(xy, dtype=float)
        col = np.floor((xy[..., 0] - self.origin[0]) / self.resolution)
        row = np.floor((xy[..., 1] - self.origin[1]) / self.resolution)
        return np.stack([row, col], axis=-1).astype(int)

    def cell_to_world(self, rc: np.ndarray) -> np.ndarray:
        """(..., 2) row, col -> (..., 2) world x, y of cell centres."""
        rc = np.asarray(rc, dtype=float)
        x = self.origin[0] + (rc[..., 1] + 0.5) * self.resolution
        y = self.origin[1] + (rc[..., 0] + 0.5) * self.resolution
        return np.stack([x, y], axis=-1)


@dataclass(frozen=True)
class World:
    kind: str
    seed: int
    site: str  # stable name for the building, e.g. "office-7"
    bounds: tuple[float, float, float, float]
    wall_height: float
    rooms: tuple[Room, ...]
    doors: tuple[Door, ...]
    walls: tuple[Wall, ...]
    landmarks: tuple[Landmark, ...]
    agents: tuple[Agent, ...]
    grid: GridSpec
    spawn: tuple[float, float, float]  # x, y, yaw of the robot at episode start
    version: int = WORLD_FORMAT_VERSION
    extras: dict[str, Any] = field(default_factory=dict)

    def room(self, room_id: str) -> Room:
        return next(r for r in self.rooms if r.id == room_id)

    def room_at(self, x: float, y: float) -> Room | None:
        for r in self.rooms:
            xmin, ymin, xmax, ymax = r.bounds
            if xmin <= x <= xmax and ymin <= y <= ymax:
                return r
        return None

    def static_obstacles(self) -> list[Box]:
        """Every box that blocks the floor: walls plus colliding landmarks."""
        return [w.box for w in self.walls] + [lm.box for lm in self.landmarks if lm.collides]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> World:
        raw = json.loads(text)
        if raw.get("version") != WORLD_FORMAT_VERSION:
            raise ValueError(f"world.json version {raw.get('version')!r}, expected {WORLD_FORMAT_VERSION}")
        return _build(cls, raw)

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> World:
        path = Path(path)
        if path.is_dir():
            path = path / "world.json"
        if not path.exists():
            raise FileNotFoundError(f"no world.json at {path}; generate one with `astra sim world`")
        return cls.from_json(path.read_text())


_NESTED = {"box": Box, "grid": GridSpec}
_LISTS = {"rooms": Room, "doors": Door, "walls": Wall, "landmarks": Landmark, "agents": Agent}


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def _build(cls: type, raw: dict) -> Any:
    kwargs = {}
    for f in fields(cls):
        if f.name not in raw:
            continue
        value = raw[f.name]
        if f.name in _NESTED:
            value = _build(_NESTED[f.name], value)
        elif cls is World and f.name in _LISTS:
            value = tuple(_build(_LISTS[f.name], item) for item in value)
        elif f.name != "extras":
            value = _tupled(value)
        kwargs[f.name] = value
    return cls(**kwargs)
