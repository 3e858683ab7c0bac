"""Procedural buildings: floor plan, semantics (rooms, signs, objects), MJCF scene and occupancy grid.

A building is a corridor with a row of rooms on each side and a large entrance room (the lobby) at its west end.
In the warehouse the north row is a block of identical pallet-rack aisles between the main aisle and a back aisle,
told apart only by their aisle signs. Every area owns a wall layer just inside its cell, so each face of a partition
shows its own room's texture; a door cuts the same gap through both layers.

Everything is drawn from generators seeded by (seed, kind, purpose), so a world is a pure function of its arguments,
and the building is the same with and without dynamic agents.
"""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy.ndimage import distance_transform_edt

from schemas.world import WORLD_KINDS, Agent, Box, Door, GridSpec, Landmark, Room, Wall, World
from sim import textures

Rect = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
DoorRequest = tuple[int, int, float | None]  # area indices, width (None: an opening as wide as the shared side)
Rack = tuple[Rect, int]  # footprint, index of the aisle it belongs to

WALL_T = 0.06  # thickness of one area's wall layer; partitions are two layers
WALL_HEIGHT = 2.5
DOOR_WIDTH = 1.2
DOOR_MARGIN = 0.15  # door edge to the nearest corner
CLEARANCE = 0.9  # free floor kept in front of, beside and between furniture
DOOR_ZONE = 1.2  # furniture stays this far out of a doorway
CENTER_ZONE = 0.5  # half-size of the free square at each room centre
PLACEMENT_TRIES = 30
SIGN_W, SIGN_H, SIGN_T, SIGN_Z, SIGN_GAP = 0.5, 0.25, 0.02, 1.6, 0.1
SHELF_DEPTH, SHELF_HEIGHT = 1.0, 2.2
AISLE_WIDTH, AISLE_LENGTH, BACK_AISLE_WIDTH = (2.0, 2.4), (8.0, 10.0), 2.4
TILE = 2.0  # metres covered by one 512 px wall/floor tile: 256 px/m stays sharp at 320x240 from 1 m
POSTER_HEIGHTS = (2.0, 0.9)  # posters hang between these heights
MATERIAL_TILE = 0.5
GRID_RES, GRID_MARGIN = 0.05, 1.0
SPAWN_CLEARANCE = 0.6
AGENT_MARGIN = 0.5  # agent loops keep this far (beyond their radius) from the room bounds
AGENT_SHAPES = {"person": (0.25, (0.6, 1.0)), "cart": (0.4, (0.4, 0.8))}  # radius, speed range
SIDE_YAW = (0.0, math.pi / 2, math.pi, -math.pi / 2)  # inward normal of the W, S, E, N side of a rect

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.75, 0.15, 0.12),
    "blue": (0.18, 0.32, 0.70),
    "green": (0.22, 0.55, 0.25),
    "gray": (0.50, 0.50, 0.52),
    "dark gray": (0.20, 0.22, 0.26),
    "brown": (0.50, 0.33, 0.20),
    "white": (0.93, 0.93, 0.91),
    "black": (0.13, 0.13, 0.14),
    "beige": (0.86, 0.78, 0.62),
    "silver": (0.76, 0.77, 0.79),
    "yellow": (0.92, 0.76, 0.15),
    "orange": (0.90, 0.45, 0.10),
}


class _Item(NamedTuple):
    """A furniture category: placed against a wall, facing into the room."""

    size: tuple[float, float, float]  # along the wall, away from the wall, height
    material: str
    colors: tuple[str, ...]
    function: str
    mount_z: float | None = None  # wall-mounted items hang centred at this height and leave the floor free


ITEMS: dict[str, _Item] = {
    "sofa": _Item((2.0, 0.9, 0.85), "fabric", ("red", "blue", "gray", "green"), "a place to rest"),
    "armchair": _Item((0.9, 0.85, 0.95), "fabric", ("brown", "red", "blue"), "a comfortable seat for one person"),
    "bench": _Item((1.6, 0.45, 0.45), "wood", ("brown", "gray"), "a place to sit while waiting"),
    "bed": _Item((1.6, 2.0, 0.6), "fabric", ("blue", "white", "green", "red"), "a bed for sleeping"),
    "hospital bed": _Item((1.0, 2.1, 0.75), "metal", ("white", "blue"), "where a patient rests"),
    "desk": _Item((1.4, 0.7, 0.75), "wood", ("brown", "white", "gray"), "a workplace with a computer"),
    "table": _Item((1.6, 0.9, 0.75), "wood", ("brown", "white", "black"), "a table for meetings and meals"),
    "reception desk": _Item((2.4, 0.8, 1.1), "wood", ("brown", "white"), "where visitors check in"),
    "nurse desk": _Item((2.0, 0.8, 1.1), "wood", ("white", "blue"), "where nurses coordinate patient care"),
    "kitchen counter": _Item((2.2, 0.6, 0.9), "ceramic", ("white", "gray", "beige"), "for preparing food and drinks"),
    "fridge": _Item((0.7, 0.7, 1.8), "metal", ("white", "silver"), "keeps food and drinks cold"),
    "vending machine": _Item((0.9, 0.8, 1.8), "metal", ("red", "blue"), "sells snacks and drinks"),
    "water cooler": _Item((0.4, 0.4, 1.2), "plastic", ("blue", "white"), "dispenses drinking water"),
    "copier": _Item((1.0, 0.7, 1.1), "plastic", ("gray", "white"), "prints and copies documents"),
    "server rack": _Item((0.6, 1.0, 2.0), "metal", ("black",), "runs the IT servers"),
    "cabinet": _Item((1.0, 0.5, 1.2), "metal", ("gray", "white", "blue"), "stores files and supplies"),
    "bookshelf": _Item((1.2, 0.4, 1.9), "wood", ("brown", "white"), "holds books and binders"),
    "storage shelf": _Item((1.5, 0.6, 2.0), "metal", ("gray", "blue"), "stores supplies in boxes"),
    "wardrobe": _Item((1.6, 0.6, 2.0), "wood", ("brown", "white"), "stores clothes"),
    "plant": _Item((0.5, 0.5, 1.3), "foliage", ("green",), "a decorative potted plant"),
    "fire extinguisher": _Item((0.3, 0.25, 0.7), "metal", ("red",), "for putting out fires"),
    "charging dock": _Item((0.6, 0.4, 0.5), "plastic", ("black", "white"), "recharges the robot's battery"),
    "iv stand": _Item((0.5, 0.5, 1.8), "metal", ("silver",), "holds infusion bags"),
    "crash cart": _Item((0.7, 0.5, 1.0), "metal", ("red",), "emergency resuscitation equipment"),
    "x-ray machine": _Item((1.6, 1.2, 1.9), "metal", ("white",), "takes X-ray images"),
    "lab bench": _Item((2.0, 0.75, 0.95), "ceramic", ("white", "gray"), "for analysing samples"),
    "bathtub": _Item((1.7, 0.75, 0.55), "ceramic", ("white",), "for bathing"),
    "sink": _Item((0.8, 0.5, 0.9), "ceramic", ("white",), "for washing hands"),
    "toilet": _Item((0.45, 0.7, 0.8), "ceramic", ("white",), "a toilet"),
    "washing machine": _Item((0.6, 0.6, 0.85), "metal", ("white",), "washes clothes"),
    "toy box": _Item((0.8, 0.5, 0.5), "plastic", ("yellow", "red", "blue"), "stores toys"),
    "pallet stack": _Item((1.2, 1.0, 1.3), "wood", ("brown",), "goods waiting to be shipped"),
    "packing table": _Item((2.0, 0.9, 0.9), "wood", ("brown", "gray"), "where orders are packed"),
    "workbench": _Item((2.0, 0.8, 0.95), "metal", ("gray", "blue"), "for repairing equipment"),
    "parked cart": _Item((1.0, 0.6, 1.0), "metal", ("blue", "silver"), "a transport cart waiting for use"),
    "forklift charger": _Item((0.8, 0.5, 1.4), "metal", ("yellow",), "charges forklift batteries"),
    "whiteboard": _Item((1.8, 0.04, 1.0), "plastic", ("white",), "for writing during meetings", 1.45),
    "tv": _Item((1.2, 0.06, 0.7), "plastic", ("black",), "shows news and presentations", 1.5),
}
RACK = _Item((SHELF_DEPTH, 0.0, SHELF_HEIGHT), "metal", ("orange",), "stores pallets of goods")


class _RoomSpec(NamedTuple):
    name: str
    function: str
    items: tuple[str, ...]


class _KindSpec(NamedTuple):
    """Vocabulary and proportions of one kind of building."""

    lobby: _RoomSpec
    corridor: _RoomSpec
    rooms: tuple[_RoomSpec, ...]  # the first `required` are always built
    required: int
    room_width: tuple[float, float]
    room_depth: tuple[float, float]
    corridor_width: tuple[float, float]
    lobby_width: tuple[float, float]
    rooms_per_row: tuple[int, int]
    aisles: tuple[int, int]  # (0, 0): the north row holds rooms; else that many rack aisles
    floors: tuple[str, str]  # textures.FLOOR_STYLES of rooms and of corridors
    agents: tuple[str, ...]  # agent kinds added when dynamic; carts first, they need a corridor of their own


KINDS: dict[str, _KindSpec] = {
    "office": _KindSpec(
        lobby=_RoomSpec("Reception", "visitor reception and waiting area", ("reception desk", "sofa", "plant")),
        corridor=_RoomSpec("Corridor", "connects the offices", ("plant", "fire extinguisher", "water cooler")),
        rooms=(
            _RoomSpec("Charging bay", "charging bay for robots", ("charging dock", "charging dock", "cabinet")),
            _RoomSpec("Kitchen", "kitchen and coffee point", ("kitchen counter", "fridge", "table")),
            _RoomSpec("Meeting room A", "meeting room", ("table", "whiteboard", "plant")),
            _RoomSpec("Meeting room B", "meeting room", ("table", "tv", "plant")),
            _RoomSpec("Open office", "open-plan workspace", ("desk", "desk", "bookshelf")),
            _RoomSpec("Lounge", "resting area", ("sofa", "armchair", "tv")),
            _RoomSpec("Print room", "printing and copying", ("copier", "cabinet")),
            _RoomSpec("Server room", "IT equipment room", ("server rack", "server rack")),
            _RoomSpec("Manager office", "private office", ("desk", "bookshelf", "armchair")),
            _RoomSpec("Library", "quiet reading area", ("bookshelf", "bookshelf", "armchair")),
            _RoomSpec("Supply room", "office supplies storage", ("storage shelf", "cabinet")),
        ),
        required=1,
        room_width=(4.0, 6.5),
        room_depth=(4.5, 6.5),
        corridor_width=(2.2, 2.6),
        lobby_width=(5.0, 7.0),
        rooms_per_row=(3, 4),
        aisles=(0, 0),
        floors=("carpet", "tiles"),
        agents=("cart", "person", "person", "person"),
    ),
    "hospital": _KindSpec(
        lobby=_RoomSpec("Reception", "patient check-in and waiting area", ("reception desk", "bench", "plant")),
        corridor=_RoomSpec(
            "Main corridor", "connects the wards and departments", ("fire extinguisher", "bench", "crash cart")
        ),
        rooms=(
            _RoomSpec("Nurse station", "nurse station", ("nurse desk", "cabinet", "crash cart")),
            _RoomSpec("Radiology", "medical imaging (X-ray)", ("x-ray machine", "cabinet")),
            _RoomSpec("Ward A", "patient ward", ("hospital bed", "hospital bed", "iv stand")),
            _RoomSpec("Ward B", "patient ward", ("hospital bed", "hospital bed", "armchair")),
            _RoomSpec("Pharmacy", "dispenses medication", ("storage shelf", "cabinet")),
            _RoomSpec("Laboratory", "blood and sample analysis", ("lab bench", "fridge")),
            _RoomSpec("Waiting room", "resting area for visitors", ("bench", "bench", "vending machine")),
            _RoomSpec("Staff room", "resting area for staff", ("sofa", "table", "fridge")),
            _RoomSpec("Charging bay", "charging bay for delivery robots", ("charging dock", "charging dock")),
            _RoomSpec("Supply room", "medical supplies storage", ("storage shelf", "storage shelf", "parked cart")),
            _RoomSpec("Cafeteria", "food and drinks", ("table", "table", "vending machine")),
        ),
        required=2,
        room_width=(4.5, 7.0),
        room_depth=(5.0, 7.0),
        corridor_width=(2.4, 3.0),
        lobby_width=(6.0, 8.0),
        rooms_per_row=(3, 4),
        aisles=(0, 0),
        floors=("vinyl", "tiles"),
        agents=("cart", "person", "person", "person"),
    ),
    "home": _KindSpec(
        lobby=_RoomSpec("Living room", "resting area with sofa and TV", ("sofa", "tv", "armchair", "plant")),
        corridor=_RoomSpec("Hallway", "connects the rooms of the house", ("plant",)),
        rooms=(
            _RoomSpec("Kitchen", "cooking and eating", ("kitchen counter", "fridge", "table")),
            _RoomSpec("Bedroom", "sleeping", ("bed", "wardrobe", "plant")),
            _RoomSpec("Guest bedroom", "sleeping for guests", ("bed", "wardrobe")),
            _RoomSpec("Bathroom", "washing and toilet", ("bathtub", "sink", "toilet")),
            _RoomSpec("Dining room", "family meals", ("table", "cabinet", "plant")),
            _RoomSpec("Study", "working from home", ("desk", "bookshelf", "armchair")),
            _RoomSpec("Laundry room", "washing clothes", ("washing machine", "cabinet")),
            _RoomSpec("Kids room", "children's bedroom and play area", ("bed", "toy box", "bookshelf")),
            _RoomSpec("Utility room", "charging bay for the home robot", ("charging dock", "storage shelf")),
        ),
        required=2,
        room_width=(3.8, 5.5),
        room_depth=(4.0, 5.5),
        corridor_width=(2.2, 2.4),
        lobby_width=(5.0, 6.5),
        rooms_per_row=(3, 3),
        aisles=(0, 0),
        floors=("wood", "wood"),
        agents=("person", "person"),
    ),
    "warehouse": _KindSpec(
        lobby=_RoomSpec(
            "Loading dock",
            "truck loading and unloading",
            ("pallet stack", "pallet stack", "pallet stack", "forklift charger"),
        ),
        corridor=_RoomSpec("Main aisle", "cross aisle for carts and forklifts", ("fire extinguisher",) * 2),
        rooms=(
            _RoomSpec(
                "Charging bay",
                "charging bay for robots and forklifts",
                ("charging dock", "charging dock", "forklift charger"),
            ),
            _RoomSpec("Packing area", "order packing", ("packing table", "packing table")),
            _RoomSpec("Shipping office", "shipping paperwork", ("desk", "cabinet")),
            _RoomSpec("Break room", "resting area for staff", ("table", "vending machine", "sofa")),
            _RoomSpec("Returns area", "processing returned goods", ("pallet stack", "packing table")),
            _RoomSpec("Cart parking", "where carts are parked", ("parked cart",) * 3),
            _RoomSpec("Maintenance", "forklift maintenance", ("workbench", "cabinet")),
        ),
        required=1,
        room_width=(5.0, 7.0),
        room_depth=(5.0, 6.5),
        corridor_width=(3.0, 3.4),
        lobby_width=(6.0, 8.0),
        rooms_per_row=(3, 4),
        aisles=(4, 6),
        floors=("concrete", "concrete"),
        agents=("cart", "cart", "person", "person"),
    ),
}
_AISLE_FUNCTION = "pallet rack storage"
_BACK_AISLE = _RoomSpec("Back aisle", "rear cross aisle behind the racks", ("fire extinguisher",))


@dataclass(frozen=True)
class _Area:
    """A room, corridor or aisle during generation: its cell in the floor plan and how its sides are closed."""

    id: str
    spec: _RoomSpec
    kind: str  # "room" | "corridor" | "aisle"
    cell: Rect
    inset: tuple[float, float, float, float]  # free floor starts this far inside the W, S, E, N side
    walled: tuple[bool, bool, bool, bool]

    @property
    def bounds(self) -> Rect:
        x0, y0, x1, y1 = (c + (i if s < 2 else -i) for s, (c, i) in enumerate(zip(self.cell, self.inset, strict=True)))
        return (x0, y0, x1, y1)


def _area(area_id: str, spec: _RoomSpec, kind: str, cell: Rect, open_sides: tuple[int, ...] = ()) -> _Area:
    walled = tuple(s not in open_sides for s in range(4))
    return _Area(area_id, spec, kind, cell, tuple(WALL_T if w else 0.0 for w in walled), walled)


def _rng(seed: int, kind: str, purpose: str) -> np.random.Generator:
    """A generator for one purpose; crc32 (not hash()) keeps it stable across processes."""
    return np.random.default_rng([seed, zlib.crc32(kind.encode()), zlib.crc32(purpose.encode())])


def _r(value: float) -> float:
    return round(float(value), 4) + 0.0  # + 0.0 turns -0.0 into 0.0


def _draw(rng: np.random.Generator, span: tuple[float, float]) -> float:
    return round(float(rng.uniform(*span)), 1)


def _split(rng: np.random.Generator, start: float, length: float, spec: _KindSpec) -> list[tuple[float, float]]:
    """Cut [start, start + length] into a row of rooms at least spec.room_width[0] wide (where the length allows)."""
    count = int(np.clip(round(length / np.mean(spec.room_width)), *spec.rooms_per_row))
    spare = length - count * spec.room_width[0]
    widths = spec.room_width[0] + spare * rng.dirichlet(np.full(count, 4.0))
    edges = np.round(start + np.concatenate([[0.0], np.cumsum(widths)]), 2)
    edges[-1] = round(start + length, 4)
    return [(float(a), float(b)) for a, b in itertools.pairwise(edges)]


def _layout(spec: _KindSpec, rng: np.random.Generator) -> tuple[list[_Area], list[DoorRequest], list[Rack]]:
    """Areas (lobby, corridor, rooms south then north, or aisles and the back aisle), door requests and racks."""
    lobby_w, corridor_w, depth_s = (_draw(rng, s) for s in (spec.lobby_width, spec.corridor_width, spec.room_depth))
    y_n = depth_s + corridor_w
    n_aisles = int(rng.integers(spec.aisles[0], spec.aisles[1] + 1))
    if n_aisles:
        aisle_w, aisle_len = _draw(rng, AISLE_WIDTH), _draw(rng, AISLE_LENGTH)
        length = round(2 * WALL_T + (n_aisles + 1) * SHELF_DEPTH + n_aisles * aisle_w, 4)
        height = y_n + aisle_len + BACK_AISLE_WIDTH
    else:
        count = int(rng.integers(spec.rooms_per_row[0], spec.rooms_per_row[1] + 1))
        length = round(sum(_draw(rng, spec.room_width) for _ in range(count)), 4)
        height = y_n + _draw(rng, spec.room_depth)
    x0, x1 = lobby_w, lobby_w + length
    rows = [_split(rng, x0, length, spec), [] if n_aisles else _split(rng, x0, length, spec)]
    extra = spec.rooms[spec.required :]
    chosen = list(spec.rooms[: spec.required]) + [extra[i] for i in rng.permutation(len(extra))]
    specs = iter([chosen[i] for i in rng.permutation(len(rows[0]) + len(rows[1]))])

    areas = [
        _area("r0", spec.lobby, "room", (0.0, 0.0, lobby_w, height)),
        _area("r1", spec.corridor, "corridor", (x0, depth_s, x1, y_n), open_sides=(3,) if n_aisles else ()),
    ]
    requests: list[DoorRequest] = [(0, 1, DOOR_WIDTH)]
    for row, (y0, y1) in zip(rows, ((0.0, depth_s), (y_n, height)), strict=True):
        first = len(areas)
        areas += [_area(f"r{first + i}", next(specs), "room", (a, y0, b, y1)) for i, (a, b) in enumerate(row)]
        requests += [(1, i, DOOR_WIDTH) for i in range(first, len(areas))]
        requests += [(0, first, DOOR_WIDTH)] if row and rng.random() < 0.5 else []
        requests += [(i, i + 1, DOOR_WIDTH) for i in range(first, len(areas) - 1) if rng.random() < 0.3]
    racks = _aisles(areas, requests, (x0, y_n, x1, height), n_aisles, aisle_w, aisle_len) if n_aisles else []
    return areas, requests, racks


def _aisles(
    areas: list[_Area], requests: list[DoorRequest], block: Rect, count: int, width: float, length: float
) -> list[Rack]:
    """Append `count` rack aisles and the back aisle filling `block` (north of the corridor); return the racks."""
    x0, y0, x1, y1 = block
    shelf_x = [x0 + WALL_T + k * (SHELF_DEPTH + width) for k in range(count + 1)]
    first, back = len(areas), len(areas) + count
    for k in range(1, count + 1):
        lo = x0 if k == 1 else shelf_x[k - 1] + SHELF_DEPTH / 2
        hi = x1 if k == count else shelf_x[k] + SHELF_DEPTH / 2
        # racks separate neighbouring aisles, so only the outermost aisles have side walls
        inset = (shelf_x[k - 1] + SHELF_DEPTH - lo, 0.0, hi - shelf_x[k], 0.0)
        spec = _RoomSpec(f"Aisle {k}", _AISLE_FUNCTION, ())
        walled = (k == 1, False, k == count, False)
        areas.append(_Area(f"r{len(areas)}", spec, "aisle", (lo, y0, hi, y0 + length), inset, walled))
        requests += [(1, len(areas) - 1, None), (len(areas) - 1, back, None)]
    areas.append(_area(f"r{back}", _BACK_AISLE, "corridor", (x0, y0 + length, x1, y1), open_sides=(1,)))
    requests.append((0, back, DOOR_WIDTH))
    return [((x, y0, x + SHELF_DEPTH, y0 + length), first + min(k, count - 1)) for k, x in enumerate(shelf_x)]


def _strip(rect: Rect, side: int, lo: float, hi: float, depth: float) -> Rect:
    """The rectangle inside `rect` along its side `side` (0 W, 1 S, 2 E, 3 N), spanning [lo, hi] along that side."""
    face = rect[side]
    inner = face + (depth if side < 2 else -depth)
    near, far = min(face, inner), max(face, inner)
    return (near, lo, far, hi) if side % 2 == 0 else (lo, near, hi, far)


def _box(rect: Rect, z0: float, z1: float) -> Box:
    x0, y0, x1, y1 = rect
    center = (_r((x0 + x1) / 2), _r((y0 + y1) / 2), _r((z0 + z1) / 2))
    return Box(center, (_r((x1 - x0) / 2), _r((y1 - y0) / 2), _r((z1 - z0) / 2)))


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _gap(a: Rect, b: Rect) -> float:
    """Euclidean distance between two rectangles (0 when they touch or overlap)."""
    dx = max(b[0] - a[2], a[0] - b[2], 0.0)
    dy = max(b[1] - a[3], a[1] - b[3], 0.0)
    return math.hypot(dx, dy)


def _subtract(span: tuple[float, float], holes: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Parts of the interval `span` outside the sorted intervals `holes`."""
    pieces, start = [], span[0]
    for lo, hi in holes:
        pieces.append((start, min(lo, span[1])))
        start = max(start, hi)
    pieces.append((start, span[1]))
    return [(a, b) for a, b in pieces if b - a > 1e-3]


def _shared_side(a: _Area, b: _Area) -> int:
    """The side of `a` that touches `b`."""
    for side in range(4):
        other = 1 - side % 2
        touching = abs(a.cell[side] - b.cell[(side + 2) % 4]) < 1e-6
        if touching and a.cell[other] < b.cell[other + 2] and b.cell[other] < a.cell[other + 2]:
            return side
    raise ValueError(f"areas {a.id} and {b.id} do not touch")


def _door_side(area: _Area, door: Door) -> int:
    """The side of `area` whose line the door lies on."""
    return next(
        s
        for s in range(4)
        if abs(door.center[s % 2] - area.cell[s]) < 1e-6
        and area.cell[1 - s % 2] < door.center[1 - s % 2] < area.cell[3 - s % 2]
    )


def _door_span(door: Door, axis: int) -> tuple[float, float]:
    return (door.center[axis] - door.width / 2, door.center[axis] + door.width / 2)


def _place_doors(areas: list[_Area], requests: list[DoorRequest], rng: np.random.Generator) -> tuple[Door, ...]:
    doors = []
    sign_span = SIGN_GAP + SIGN_W + 0.05
    for i, j, width in requests:
        a, b = areas[i], areas[j]
        side = _shared_side(a, b)
        other = 1 - side % 2
        lo, hi = max(a.bounds[other], b.bounds[other]), min(a.bounds[other + 2], b.bounds[other + 2])
        if width is None:
            start, width = lo, hi - lo
        else:
            slack = hi - lo - width - 2 * DOOR_MARGIN
            # on short walls the door goes to one end, so the other end is long enough for a sign
            u = rng.random() if slack > 2 * sign_span else float(rng.integers(0, 2))
            start = lo + DOOR_MARGIN + u * slack
        center = [0.0, 0.0]
        center[side % 2], center[other] = a.cell[side], start + width / 2
        doors.append(Door(f"d{len(doors)}", (a.id, b.id), (_r(center[0]), _r(center[1])), _r(width)))
    return tuple(doors)


def _walls(areas: list[_Area], doors: tuple[Door, ...]) -> tuple[Wall, ...]:
    """Each area's wall layer along its walled sides, with the door gaps cut out."""
    walls = []
    for area in areas:
        for side in (s for s in range(4) if area.walled[s]):
            other = 1 - side % 2
            gaps = sorted(_door_span(d, other) for d in doors if area.id in d.rooms and _door_side(area, d) == side)
            for lo, hi in _subtract((area.cell[other], area.cell[other + 2]), gaps):
                box = _box(_strip(area.cell, side, lo, hi, WALL_T), 0.0, WALL_HEIGHT)
                walls.append(Wall(f"w{len(walls)}", box, f"wall_{area.id}"))
    return tuple(walls)


def _mounts(area: _Area, side: int, doors: tuple[Door, ...], racks: list[Rack]) -> list[tuple[float, float]]:
    """Intervals along a face of `area` where a sign can hang: the wall, or rack ends on an open side."""
    other = 1 - side % 2
    if area.walled[side]:
        spans = [(area.bounds[other], area.bounds[other + 2])]
    else:
        face = area.bounds[side]
        spans = [(rect[other], rect[other + 2]) for rect, _ in racks if abs(rect[(side + 2) % 4] - face) < 1e-6]
    gaps = sorted(_door_span(d, other) for d in doors if area.id in d.rooms and _door_side(area, d) == side)
    return [piece for span in spans for piece in _subtract(span, gaps)]


def _signs(kind: str, areas: list[_Area], doors: tuple[Door, ...], racks: list[Rack]) -> list[Landmark]:
    """A name sign beside each door into a room or aisle, on the side it is approached from."""
    by_id = {a.id: a for a in areas}
    color = textures.SIGN_COLOR_NAMES[kind]
    taken: dict[tuple[str, int], list[tuple[float, float]]] = {}
    signs = []
    for door in doors:
        for src_id, dst_id in (door.rooms, door.rooms[::-1]):
            src, dst = by_id[src_id], by_id[dst_id]
            if dst.kind == "corridor":
                continue
            side = _door_side(src, door)
            lo, hi = _door_span(door, 1 - side % 2)
            mounts = _mounts(src, side, doors, racks)
            used = taken.setdefault((src.id, side), [])
            for u0 in (lo - SIGN_GAP - SIGN_W, hi + SIGN_GAP):
                u1 = u0 + SIGN_W
                fits = any(m0 <= u0 and u1 <= m1 for m0, m1 in mounts)
                if fits and not any(u0 < t1 + 0.05 and t0 - 0.05 < u1 for t0, t1 in used):
                    used.append((u0, u1))
                    box = _box(_strip(src.bounds, side, u0, u1, SIGN_T), SIGN_Z - SIGN_H / 2, SIGN_Z + SIGN_H / 2)
                    category = "aisle sign" if dst.kind == "aisle" else "room sign"
                    function = f"marks the entrance to {dst.spec.name}"
                    signs.append(
                        Landmark(
                            id=f"s{len(signs)}",
                            kind="sign",
                            category=category,
                            text=dst.spec.name,
                            color=color,
                            material="plastic",
                            function=function,
                            room_id=src.id,
                            box=box,
                            yaw=_r(SIDE_YAW[side]),
                            collides=False,
                        )
                    )
                    break
    return signs


def _place_item(
    area: _Area, item: _Item, keepout: list[Rect], placed: list[Rect], rng: np.random.Generator
) -> tuple[Rect, int] | None:
    """A footprint against one of the area's walls that leaves CLEARANCE of free floor around it, or None."""
    w, d, _ = item.size
    sides = [s for s in range(4) if area.walled[s]]
    for _ in range(PLACEMENT_TRIES):
        side = int(rng.choice(sides))
        other = 1 - side % 2
        lo, hi = area.bounds[other], area.bounds[other + 2]
        slack = hi - lo - w
        room_depth = area.bounds[side % 2 + 2] - area.bounds[side % 2]
        if d + CLEARANCE > room_depth or slack < 0 or 1e-6 < slack < CLEARANCE:
            continue
        if slack < 2 * CLEARANCE or rng.random() < 0.3:  # flush into a corner
            start = lo if rng.random() < 0.5 else hi - w
        else:
            start = rng.uniform(lo + CLEARANCE, hi - CLEARANCE - w)
        rect = _strip(area.bounds, side, start, start + w, d)
        if not any(_overlaps(rect, k) for k in keepout) and all(_gap(rect, p) >= CLEARANCE for p in placed):
            placed.append(rect)
            return rect, side
    return None


def _furnish(
    areas: list[_Area], doors: tuple[Door, ...], racks: list[Rack], rng: np.random.Generator
) -> list[Landmark]:
    """Racks, then each area's furniture from its vocabulary; items that do not fit are left out."""
    objects = [
        Landmark(
            id=f"o{i}",
            kind="object",
            category="pallet rack",
            text="",
            color=RACK.colors[0],
            material=RACK.material,
            function=RACK.function,
            room_id=areas[owner].id,
            box=_box(rect, 0.0, SHELF_HEIGHT),
            yaw=0.0,
            collides=True,
        )
        for i, (rect, owner) in enumerate(racks)
    ]
    for area in areas:
        keepout = []
        for door in (d for d in doors if area.id in d.rooms):
            side = _door_side(area, door)
            lo, hi = _door_span(door, 1 - side % 2)
            keepout.append(_strip(area.bounds, side, lo - CLEARANCE, hi + CLEARANCE, DOOR_ZONE))
        cx, cy = (area.bounds[0] + area.bounds[2]) / 2, (area.bounds[1] + area.bounds[3]) / 2
        keepout.append((cx - CENTER_ZONE, cy - CENTER_ZONE, cx + CENTER_ZONE, cy + CENTER_ZONE))
        placed: list[Rect] = []
        for category in area.spec.items:
            item = ITEMS[category]
            spot = _place_item(area, item, keepout, placed, rng)
            if spot is None:
                continue
            rect, side = spot
            z0 = 0.0 if item.mount_z is None else item.mount_z - item.size[2] / 2
            objects.append(
                Landmark(
                    id=f"o{len(objects)}",
                    kind="object",
                    category=category,
                    text="",
                    color=str(rng.choice(item.colors)),
                    material=item.material,
                    function=item.function,
                    room_id=area.id,
                    box=_box(rect, z0, z0 + item.size[2]),
                    yaw=_r(SIDE_YAW[side]),
                    collides=item.mount_z is None,
                )
            )
    return objects


def _grid_spec(bounds: Rect) -> GridSpec:
    x0, y0, x1, y1 = bounds
    cols = math.ceil(round((x1 - x0 + 2 * GRID_MARGIN) / GRID_RES, 6))
    rows = math.ceil(round((y1 - y0 + 2 * GRID_MARGIN) / GRID_RES, 6))
    return GridSpec(GRID_RES, (_r(x0 - GRID_MARGIN), _r(y0 - GRID_MARGIN)), (rows, cols))


def _cells(grid: GridSpec, rect: Rect) -> tuple[slice, slice]:
    """Grid slices of the cells a rectangle overlaps (cells it merely touches are left out)."""
    ox, oy = grid.origin
    c0, c1 = math.floor((rect[0] - ox) / grid.resolution + 1e-6), math.ceil((rect[2] - ox) / grid.resolution - 1e-6)
    r0, r1 = math.floor((rect[1] - oy) / grid.resolution + 1e-6), math.ceil((rect[3] - oy) / grid.resolution - 1e-6)
    return slice(max(r0, 0), max(r1, 0)), slice(max(c0, 0), max(c1, 0))


def occupancy_grid(world: World) -> np.ndarray:
    """Bool (rows, cols) grid over world.grid; True where walls, colliding landmarks or the outside are."""
    grid = np.ones(world.grid.shape, dtype=bool)
    grid[_cells(world.grid, world.bounds)] = False
    for box in world.static_obstacles():
        grid[_cells(world.grid, box.footprint)] = True
    return grid


def _clearance(world: World) -> np.ndarray:
    """Distance in metres from each cell centre to the nearest occupied cell centre."""
    return distance_transform_edt(~occupancy_grid(world)) * world.grid.resolution


def _spawn(world: World, clearance: np.ndarray) -> tuple[float, float, float]:
    """The free spot nearest the first room's centre, facing that room's first door."""
    room = world.rooms[0]
    xy = world.grid.cell_to_world(np.argwhere(clearance >= SPAWN_CLEARANCE + world.grid.resolution))
    xy = xy[(xy >= room.bounds[:2]).all(axis=1) & (xy <= room.bounds[2:]).all(axis=1)]
    x, y = xy[np.argmin(np.hypot(*(xy - room.center).T))]
    door = next(d for d in world.doors if room.id in d.rooms)
    return (_r(x), _r(y), _r(math.atan2(door.center[1] - y, door.center[0] - x)))


def _path_clear(points: list[tuple[float, float]], need: float, grid: GridSpec, clearance: np.ndarray) -> bool:
    """Whether the closed polyline keeps `need` metres from every obstacle."""
    loop = np.asarray(points + points[:1])
    samples = np.concatenate([np.linspace(a, b, 50) for a, b in itertools.pairwise(loop)])
    rc = grid.world_to_cell(samples)
    inside = ((rc >= 0) & (rc < grid.shape)).all()
    return bool(inside and (clearance[rc[:, 0], rc[:, 1]] >= need).all())


def _loops(room: Room, radius: float) -> list[list[tuple[float, float]]]:
    """Candidate closed walks in a room, largest first: its inset perimeter, then back and forth along each axis,
    each also shrunk towards the (always free) room centre, to get past furniture."""
    inset = radius + AGENT_MARGIN
    cx, cy = room.center
    half_x, half_y = (room.bounds[2] - room.bounds[0]) / 2 - inset, (room.bounds[3] - room.bounds[1]) / 2 - inset
    loops = []
    for scale in (1.0, 0.6, 0.3):
        ax, ay = half_x * scale, half_y * scale
        if min(ax, ay) > 0.5:
            loops.append([(cx - ax, cy - ay), (cx + ax, cy - ay), (cx + ax, cy + ay), (cx - ax, cy + ay)])
        lines = [[(cx - ax, cy), (cx + ax, cy)], [(cx, cy - ay), (cx, cy + ay)]]
        loops += [line for line, half in zip(lines, (ax, ay), strict=True) if half > 0.3]
    return loops


def _agents(spec: _KindSpec, world: World, clearance: np.ndarray, rng: np.random.Generator) -> tuple[Agent, ...]:
    """People anywhere and carts in corridors, each walking a loop in its own area (never the spawn room)."""
    agents: list[Agent] = []
    free_rooms = list(world.rooms[1:])
    for kind in spec.agents:
        radius, speeds = AGENT_SHAPES[kind]
        pool = [r for r in free_rooms if kind == "person" or r.kind == "corridor"]
        for index in rng.permutation(len(pool)):
            room = pool[index]
            loop = next((p for p in _loops(room, radius) if _path_clear(p, radius + 0.1, world.grid, clearance)), None)
            if loop is not None:
                waypoints = tuple((_r(x), _r(y)) for x, y in loop)
                agents.append(Agent(f"a{len(agents)}", kind, waypoints, _r(rng.uniform(*speeds)), radius))
                free_rooms.remove(room)
                break
    return tuple(agents)


def generate_world(kind: str, seed: int, dynamic: bool = False) -> World:
    """A building of the given kind; the same (kind, seed, dynamic) always gives the same world."""
    if kind not in WORLD_KINDS:
        raise ValueError(f"unknown world kind {kind!r}; valid kinds: {', '.join(WORLD_KINDS)}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    spec = KINDS[kind]
    rng = _rng(seed, kind, "layout")
    areas, requests, racks = _layout(spec, rng)
    doors = _place_doors(areas, requests, rng)
    landmarks = _signs(kind, areas, doors, racks) + _furnish(areas, doors, racks, rng)
    cells = np.array([a.cell for a in areas])
    bounds = (_r(cells[:, 0].min()), _r(cells[:, 1].min()), _r(cells[:, 2].max()), _r(cells[:, 3].max()))
    world = World(
        kind=kind,
        seed=seed,
        site=f"{kind}-{seed}",
        bounds=bounds,
        wall_height=WALL_HEIGHT,
        rooms=tuple(Room(a.id, a.spec.name, a.spec.function, a.kind, tuple(_r(v) for v in a.bounds)) for a in areas),
        doors=doors,
        walls=_walls(areas, doors),
        landmarks=tuple(landmarks),
        agents=(),
        grid=_grid_spec(bounds),
        spawn=(0.0, 0.0, 0.0),
    )
    clearance = _clearance(world)
    world = replace(world, spawn=_spawn(world, clearance))
    if dynamic:
        world = replace(world, agents=_agents(spec, world, clearance, _rng(seed, kind, "agents")))
    return world


def _fmt(*values: float) -> str:
    """Fixed 4-decimal formatting, so the XML text is byte-stable."""
    text = (f"{v:.4f}".rstrip("0").rstrip(".") for v in values)
    return " ".join("0" if t == "-0" else t for t in text)


def _landmark_texture(lm: Landmark) -> str:
    if lm.kind == "sign":
        return f"sign_{lm.id}"
    return "rack" if lm.category == "pallet rack" else f"mat_{lm.material}"


def _floor_texture(room: Room) -> str:
    return "floor_room" if room.kind == "room" else "floor_corridor"


def _texture_images(world: World) -> dict[str, Image.Image]:
    """Every texture world.xml references, by name; each drawn from its own seeded generator."""
    spec = KINDS[world.kind]

    def rng(name: str) -> np.random.Generator:
        return _rng(world.seed, world.kind, f"texture:{name}")

    images = {
        f"floor_{use}": textures.floor_texture(rng(use), style)
        for use, style in zip(("room", "corridor"), spec.floors, strict=True)
    }
    images["ceiling"] = textures.ceiling_texture(rng("ceiling"))
    walled = [r for r in world.rooms if any(w.material == f"wall_{r.id}" for w in world.walls)]
    palettes = rng("palettes").permutation(len(textures.WALL_PALETTES))
    # wall textures are anchored at the wall's top edge
    rows = tuple(int((WALL_HEIGHT - z) / TILE * textures.WALL_PX) for z in POSTER_HEIGHTS)
    for i, room in enumerate(walled):
        name = f"wall_{room.id}"
        palette = textures.WALL_PALETTES[palettes[i % len(palettes)]]
        images[name] = textures.wall_texture(rng(name), palette, rows)
    for lm in world.landmarks:
        name = _landmark_texture(lm)
        if name in images:
            continue
        if lm.kind == "sign":
            images[name] = textures.sign_texture(lm.text, world.kind)
        elif name == "rack":
            images[name] = textures.rack_texture(rng(name))
        else:
            images[name] = textures.material_texture(rng(name), lm.material)
    return images


def _rgba(color: tuple[float, float, float]) -> str:
    return _fmt(*color, 1.0)


def _local_size(box: Box, yaw: float) -> tuple[float, float, float]:
    """Half-sizes in the frame turned by yaw (a multiple of 90 degrees) whose AABB is `box`."""
    hx, hy, hz = box.half_size
    return (hy, hx, hz) if abs(math.sin(yaw)) > 0.5 else (hx, hy, hz)


def _add_landmark(asset: ET.Element, body: ET.Element, lm: Landmark) -> None:
    material = f"mat_{lm.id}"
    hx, hy, hz = _local_size(lm.box, lm.yaw)
    if lm.kind == "sign":
        repeat, rgba = (1.0, 1.0), (1.0, 1.0, 1.0)
    elif lm.category == "pallet rack":
        repeat, rgba = (2 * max(hx, hy) / TILE, 1.0), (1.0, 1.0, 1.0)
    else:
        repeat, rgba = (2 * max(hx, hy) / MATERIAL_TILE, 2 * hz / MATERIAL_TILE), COLORS[lm.color]
    ET.SubElement(
        asset, "material", name=material, texture=_landmark_texture(lm), texrepeat=_fmt(*repeat), rgba=_rgba(rgba)
    )
    contact = {} if lm.collides else {"contype": "0", "conaffinity": "0"}
    ET.SubElement(
        body,
        "geom",
        name=f"lm_{lm.id}",
        type="box",
        pos=_fmt(*lm.box.center),
        size=_fmt(hx, hy, hz),
        euler=_fmt(0, 0, lm.yaw),
        material=material,
        **contact,
    )
    if lm.category == "pallet rack":
        # plain end frames: a texture squeezed onto the 1 m end faces would be smeared
        (cx, cy, cz), (bx, by, bz) = lm.box.center, lm.box.half_size
        along_y = by > bx
        for k, sign in enumerate((-1, 1)):
            pos = (cx, cy + sign * (by - 0.005), cz) if along_y else (cx + sign * (bx - 0.005), cy, cz)
            size = (bx + 0.005, 0.01, bz + 0.005) if along_y else (0.01, by + 0.005, bz + 0.005)
            ET.SubElement(
                body,
                "geom",
                name=f"lm_{lm.id}_end{k}",
                type="box",
                pos=_fmt(*pos),
                size=_fmt(*size),
                rgba=_rgba(COLORS["blue"]),
                contype="0",
                conaffinity="0",
            )


def _add_agent(body: ET.Element, agent: Agent, rng: np.random.Generator) -> None:
    (x, y), color = agent.waypoints[0], _rgba(tuple(rng.uniform(0.15, 0.85, 3)))
    mocap = ET.SubElement(body, "body", name=f"agent_{agent.id}", mocap="true", pos=_fmt(x, y, 0.0))
    if agent.kind == "person":
        ET.SubElement(
            mocap,
            "geom",
            name=f"agent_{agent.id}",
            type="capsule",
            pos="0 0 0.8",
            size=_fmt(agent.radius - 0.03, 0.55),
            rgba=color,
        )
        ET.SubElement(
            mocap,
            "geom",
            name=f"agent_{agent.id}_head",
            type="sphere",
            pos="0 0 1.65",
            size="0.11",
            rgba=_rgba(COLORS["beige"]),
        )
    else:
        half = agent.radius / math.sqrt(2)
        ET.SubElement(
            mocap, "geom", name=f"agent_{agent.id}", type="box", pos="0 0 0.5", size=_fmt(half, half, 0.45), rgba=color
        )


# Wall boxes are turned so their long faces are the local +-z faces: MuJoCo applies texuniform (texture repeats
# per metre) only to z-facing sides, and this keeps every wall's texture at the same scale.
_WALL_QUAT = {0: "0.7071068 0.7071068 0 0", 1: "0.5 0.5 0.5 0.5"}  # long axis x / y


def _mjcf(world: World, texture_names: list[str]) -> str:
    x0, y0, x1, y1 = world.bounds
    center = ((x0 + x1) / 2, (y0 + y1) / 2)
    extent = math.hypot(x1 - x0, y1 - y0) / 2
    root = ET.Element("mujoco", model=world.site)
    ET.SubElement(root, "compiler", angle="radian", texturedir="textures")
    ET.SubElement(root, "option", timestep="0.002")
    ET.SubElement(root, "statistic", center=_fmt(*center, 1.0), extent=_fmt(extent))
    visual = ET.SubElement(root, "visual")
    ET.SubElement(visual, "quality", shadowsize="0", offsamples="0")
    ET.SubElement(visual, "global", offwidth="640", offheight="480")
    ET.SubElement(visual, "headlight", ambient="0.45 0.45 0.45", diffuse="0.4 0.4 0.4", specular="0 0 0")
    # znear is relative to the extent; 2 cm lets cameras come close to walls
    ET.SubElement(visual, "map", znear=_fmt(0.02 / extent))
    default = ET.SubElement(root, "default")
    ET.SubElement(default, "material", specular="0.1", shininess="0.1")

    asset = ET.SubElement(root, "asset")
    for name in texture_names:
        ET.SubElement(asset, "texture", name=name, type="2d", file=f"{name}.png")
    # with texuniform, texrepeat counts tiles per 2 m (MuJoCo maps a unit half-size onto the texture)
    uniform = {"texuniform": "true", "texrepeat": _fmt(2 / TILE, 2 / TILE)}
    ET.SubElement(asset, "material", name="floor", texture="floor_corridor", **uniform)
    ET.SubElement(asset, "material", name="ceiling", texture="ceiling", **uniform)
    tint_rng = _rng(world.seed, world.kind, "floor tints")
    for room in world.rooms:
        tint = tuple(tint_rng.uniform(0.8, 1.0, 3)) if room.kind == "room" else (1.0, 1.0, 1.0)
        ET.SubElement(
            asset, "material", name=f"floor_{room.id}", texture=_floor_texture(room), rgba=_rgba(tint), **uniform
        )
    for name in (n for n in texture_names if n.startswith("wall_")):
        ET.SubElement(asset, "material", name=name, texture=name, **uniform)

    body = ET.SubElement(root, "worldbody")
    for name, direction, diffuse in (("key", (0.4, 0.3, -1.0), 0.35), ("fill", (-0.3, -0.5, -1.0), 0.2)):
        ET.SubElement(
            body,
            "light",
            name=name,
            directional="true",
            castshadow="false",
            pos=_fmt(*center, 10.0),
            dir=_fmt(*direction),
            diffuse=_fmt(diffuse, diffuse, diffuse),
            specular="0 0 0",
        )
    half = ((x1 - x0) / 2 + GRID_MARGIN, (y1 - y0) / 2 + GRID_MARGIN)
    ET.SubElement(
        body, "geom", name="floor", type="plane", pos=_fmt(*center, 0.0), size=_fmt(*half, 0.1), material="floor"
    )
    decor = {"contype": "0", "conaffinity": "0"}
    for room in world.rooms:
        (cx, cy), (rx0, ry0, rx1, ry1) = room.center, room.bounds
        ET.SubElement(
            body,
            "geom",
            name=f"floor_{room.id}",
            type="box",
            pos=_fmt(cx, cy, 0.001),
            size=_fmt((rx1 - rx0) / 2, (ry1 - ry0) / 2, 0.001),
            material=f"floor_{room.id}",
            **decor,
        )
    # group 2 so top-down debug views can hide it
    ET.SubElement(
        body,
        "geom",
        name="ceiling",
        type="box",
        group="2",
        pos=_fmt(*center, world.wall_height + 0.02),
        size=_fmt((x1 - x0) / 2, (y1 - y0) / 2, 0.02),
        material="ceiling",
        **decor,
    )
    for wall in world.walls:
        hx, hy, hz = wall.box.half_size
        along = 0 if hx >= hy else 1
        ET.SubElement(
            body,
            "geom",
            name=f"wall_{wall.id}",
            type="box",
            pos=_fmt(*wall.box.center),
            size=_fmt(max(hx, hy), hz, min(hx, hy)),
            quat=_WALL_QUAT[along],
            material=wall.material,
        )
    for lm in world.landmarks:
        _add_landmark(asset, body, lm)
    for agent in world.agents:
        _add_agent(body, agent, _rng(world.seed, world.kind, f"agent:{agent.id}"))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_world(world: World, out_dir: Path) -> None:
    """Write out_dir/world.json, out_dir/world.xml (MJCF, loadable as is) and out_dir/textures/*.png."""
    out_dir = Path(out_dir)
    texture_dir = out_dir / "textures"
    texture_dir.mkdir(parents=True, exist_ok=True)
    images = _texture_images(world)
    for stale in sorted(set(texture_dir.glob("*.png")) - {texture_dir / f"{name}.png" for name in images}):
        stale.unlink()  # left over from an earlier world written here
    for name, image in images.items():
        image.save(texture_dir / f"{name}.png", format="PNG", compress_level=1)  # noise barely compresses; 4x faster
    (out_dir / "world.xml").write_text(_mjcf(world, sorted(images)))
    world.save(out_dir / "world.json")
