"""The floor plan of a building: rooms, corridors and aisles, doors, walls, signs, furniture, spawn and agent loops.

A building is a corridor with a row of rooms on each side and a large entrance room (the lobby) at its west end.
In the warehouse the north row is a block of identical pallet-rack aisles between the main aisle and a back aisle,
told apart only by their aisle signs. Every area owns a wall layer just inside its cell, so each face of a partition
shows its own room's texture; a door cuts the same gap through both layers.

Every random draw of a world comes from a generator seeded by (seed, kind, purpose) (`world_rng`), so a world is a
pure function of its arguments, and the building is the same with and without dynamic agents.
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import distance_transform_edt

from models.planning import occupancy_grid
from schemas.world import Agent, Box, Door, GridSpec, Landmark, Room, Wall, World, sign_function
from sim import textures
from sim.vocabulary import (
    AISLE_FUNCTION,
    BACK_AISLE,
    ITEMS,
    KINDS,
    RACK,
    SHELF_DEPTH,
    SHELF_HEIGHT,
    Item,
    KindSpec,
    RoomSpec,
)

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
AISLE_WIDTH, AISLE_LENGTH, BACK_AISLE_WIDTH = (2.0, 2.4), (8.0, 10.0), 2.4
GRID_RES, GRID_MARGIN = 0.05, 1.0
SPAWN_CLEARANCE = 0.6
AGENT_MARGIN = 0.5  # agent loops keep this far (beyond their radius) from the room bounds
AGENT_SHAPES = {"person": (0.25, (0.6, 1.0)), "cart": (0.4, (0.4, 0.8))}  # radius, speed range
SIDE_YAW = (0.0, math.pi / 2, math.pi, -math.pi / 2)  # inward normal of the W, S, E, N side of a rect


@dataclass(frozen=True)
class _Area:
    """A room, corridor or aisle during generation: its cell in the floor plan and how its sides are closed."""

    id: str
    spec: RoomSpec
    kind: str  # "room" | "corridor" | "aisle"
    cell: Rect
    inset: tuple[float, float, float, float]  # free floor starts this far inside the W, S, E, N side
    walled: tuple[bool, bool, bool, bool]

    @property
    def bounds(self) -> Rect:
        x0, y0, x1, y1 = (c + (i if s < 2 else -i) for s, (c, i) in enumerate(zip(self.cell, self.inset, strict=True)))
        return (x0, y0, x1, y1)


def _area(area_id: str, spec: RoomSpec, kind: str, cell: Rect, open_sides: tuple[int, ...] = ()) -> _Area:
    walled = tuple(s not in open_sides for s in range(4))
    return _Area(area_id, spec, kind, cell, tuple(WALL_T if w else 0.0 for w in walled), walled)


def world_rng(seed: int, kind: str, purpose: str) -> np.random.Generator:
    """A generator for one purpose; crc32 (not hash()) keeps it stable across processes."""
    return np.random.default_rng([seed, zlib.crc32(kind.encode()), zlib.crc32(purpose.encode())])


def _r(value: float) -> float:
    return round(float(value), 4) + 0.0  # + 0.0 turns -0.0 into 0.0


def _draw(rng: np.random.Generator, span: tuple[float, float]) -> float:
    return round(float(rng.uniform(*span)), 1)


def _split(rng: np.random.Generator, start: float, length: float, spec: KindSpec) -> list[tuple[float, float]]:
    """Cut [start, start + length] into a row of rooms at least spec.room_width[0] wide (where the length allows)."""
    count = int(np.clip(round(length / np.mean(spec.room_width)), *spec.rooms_per_row))
    spare = length - count * spec.room_width[0]
    widths = spec.room_width[0] + spare * rng.dirichlet(np.full(count, 4.0))
    edges = np.round(start + np.concatenate([[0.0], np.cumsum(widths)]), 2)
    edges[-1] = round(start + length, 4)
    return [(float(a), float(b)) for a, b in itertools.pairwise(edges)]


def _layout(spec: KindSpec, rng: np.random.Generator) -> tuple[list[_Area], list[DoorRequest], list[Rack]]:
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
        spec = RoomSpec(f"Aisle {k}", AISLE_FUNCTION, ())
        walled = (k == 1, False, k == count, False)
        areas.append(_Area(f"r{len(areas)}", spec, "aisle", (lo, y0, hi, y0 + length), inset, walled))
        requests += [(1, len(areas) - 1, None), (len(areas) - 1, back, None)]
    areas.append(_area(f"r{back}", BACK_AISLE, "corridor", (x0, y0 + length, x1, y1), open_sides=(1,)))
    requests.append((0, back, DOOR_WIDTH))
    # A rack between two aisles is two single-depth racks back to back, each stocked from, and named by, the aisle
    # it faces (as warehouse location labels are): the end racks face one aisle each.
    half = SHELF_DEPTH / 2
    racks = [((shelf_x[0], y0, shelf_x[0] + SHELF_DEPTH, y0 + length), first)]
    for k, x in enumerate(shelf_x[1:-1], start=1):
        racks.append(((x, y0, x + half, y0 + length), first + k - 1))
        racks.append(((x + half, y0, x + SHELF_DEPTH, y0 + length), first + k))
    return [*racks, ((shelf_x[-1], y0, shelf_x[-1] + SHELF_DEPTH, y0 + length), first + count - 1)]


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


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted intervals with the touching or overlapping ones joined."""
    joined: list[tuple[float, float]] = []
    for lo, hi in spans:
        if joined and lo <= joined[-1][1] + 1e-6:
            joined[-1] = (joined[-1][0], max(joined[-1][1], hi))
        else:
            joined.append((lo, hi))
    return joined


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
    """Each area's wall layer along its walled sides, with the door gaps cut out; each wears its own texture."""
    walls = []
    for area in areas:
        for side in (s for s in range(4) if area.walled[s]):
            other = 1 - side % 2
            gaps = sorted(_door_span(d, other) for d in doors if area.id in d.rooms and _door_side(area, d) == side)
            for segment, (lo, hi) in enumerate(_subtract((area.cell[other], area.cell[other + 2]), gaps)):
                box = _box(_strip(area.cell, side, lo, hi, WALL_T), 0.0, WALL_HEIGHT)
                walls.append(Wall(f"w{len(walls)}", box, textures.wall_material(area.id, side, segment)))
    return tuple(walls)


def _mounts(area: _Area, side: int, doors: tuple[Door, ...], racks: list[Rack]) -> list[tuple[float, float]]:
    """Intervals along a face of `area` where a sign can hang: the wall, or rack ends on an open side."""
    other = 1 - side % 2
    if area.walled[side]:
        spans = [(area.bounds[other], area.bounds[other + 2])]
    else:
        face = area.bounds[side]
        ends = sorted((rect[other], rect[other + 2]) for rect, _ in racks if abs(rect[(side + 2) % 4] - face) < 1e-6)
        spans = _merged(ends)  # racks back to back share one end
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
                    function = sign_function(dst.spec.name, dst.spec.function)
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
    area: _Area, item: Item, keepout: list[Rect], placed: list[Rect], rng: np.random.Generator
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


def building(kind: str, seed: int) -> World:
    """The building of a kind and seed, without agents."""
    spec = KINDS[kind]
    rng = world_rng(seed, kind, "layout")
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
    return replace(world, spawn=_spawn(world, _clearance(world)))


def agents(world: World) -> tuple[Agent, ...]:
    """People anywhere and carts in corridors, each walking a loop in its own area (never the spawn room)."""
    spec, rng, clearance = KINDS[world.kind], world_rng(world.seed, world.kind, "agents"), _clearance(world)
    placed: list[Agent] = []
    free_rooms = list(world.rooms[1:])
    for kind in spec.agents:
        radius, speeds = AGENT_SHAPES[kind]
        pool = [r for r in free_rooms if kind == "person" or r.kind == "corridor"]
        for index in rng.permutation(len(pool)):
            room = pool[index]
            loop = next((p for p in _loops(room, radius) if _path_clear(p, radius + 0.1, world.grid, clearance)), None)
            if loop is not None:
                waypoints = tuple((_r(x), _r(y)) for x, y in loop)
                placed.append(Agent(f"a{len(placed)}", kind, waypoints, _r(rng.uniform(*speeds)), radius))
                free_rooms.remove(room)
                break
    return tuple(placed)
