"""Procedural buildings: determinism, semantics, connectivity and the MJCF scene."""

from __future__ import annotations

import itertools
import math
import shutil
from collections import Counter, deque
from pathlib import Path

import mujoco
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from models.planning import occupancy_grid
from schemas.world import WORLD_KINDS, Wall, World
from sim.textures import wall_room, wall_side
from sim.vocabulary import COLORS
from sim.world import generate_world, write_world

SEED = 7
SEEDS = range(8)  # layouts checked per kind without writing files
ROBOT_INFLATION = 0.25 + 0.15  # robot radius plus safety margin


@pytest.fixture(scope="module", params=WORLD_KINDS)
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Path]:
    world = generate_world(request.param, SEED, dynamic=True)
    out = tmp_path_factory.mktemp(request.param)
    write_world(world, out)
    return world, out


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Path]:
    """A warehouse without people, written once for the tests that only look at its racks, walls and signs."""
    world = generate_world("warehouse", SEED)
    out = tmp_path_factory.mktemp("warehouse")
    write_world(world, out)
    return world, out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _worlds() -> list[World]:
    return [generate_world(kind, seed) for kind in WORLD_KINDS for seed in SEEDS]


def _clearance(world: World) -> np.ndarray:
    return ndimage.distance_transform_edt(~occupancy_grid(world)) * world.grid.resolution


def _cell(world: World, xy: tuple[float, float]) -> tuple[int, int]:
    row, col = world.grid.world_to_cell(np.asarray(xy))
    return int(row), int(col)


def test_same_arguments_give_byte_identical_files(written: tuple[World, Path], tmp_path: Path) -> None:
    world, out = written
    write_world(generate_world(world.kind, SEED, dynamic=True), tmp_path)
    first, second = _files(out), _files(tmp_path)
    assert {"world.json", "world.xml"} <= first.keys()
    assert any(name.startswith("textures/") and name.endswith(".png") for name in first)
    assert first == second


def test_other_seeds_give_other_buildings() -> None:
    assert generate_world("office", 1).to_json() != generate_world("office", 2).to_json()


def test_unknown_kind_is_rejected_with_the_valid_kinds() -> None:
    with pytest.raises(ValueError, match="warehouse"):
        generate_world("castle", 0)


def test_rooms_have_names_and_functions() -> None:
    for world in _worlds():
        assert len(world.rooms) >= 6
        assert all(r.name and r.function and r.kind in ("room", "corridor", "aisle") for r in world.rooms)
        assert len({r.name for r in world.rooms}) == len(world.rooms)


def test_rooms_are_room_sized_and_corridors_fit_the_robot() -> None:
    for world in _worlds():
        for room in world.rooms:
            xmin, ymin, xmax, ymax = room.bounds
            narrow = min(xmax - xmin, ymax - ymin)
            assert narrow >= (3.7 if room.kind == "room" else 1.6), (world.site, room.name)
            assert room.kind != "room" or room.id == world.rooms[0].id or max(xmax - xmin, ymax - ymin) <= 9.0
        assert all(door.width >= 1.0 for door in world.doors)


def test_landmarks_carry_semantics() -> None:
    for world in _worlds():
        signs = [lm for lm in world.landmarks if lm.kind == "sign"]
        objects = [lm for lm in world.landmarks if lm.kind == "object"]
        assert len(world.landmarks) >= 15 and signs and objects
        assert len({lm.id for lm in world.landmarks}) == len(world.landmarks)
        assert all(lm.category and lm.color and lm.material and lm.function for lm in world.landmarks)
        names = {r.name for r in world.rooms}
        for sign in signs:
            assert sign.text in names and not sign.collides
            assert 1.4 <= sign.box.center[2] <= 1.8 and min(sign.box.half_size[:2]) <= 0.02
            # it faces into its room: a step in front of it is on that room's floor
            x, y, _ = sign.box.center
            ahead = (x + 0.3 * math.cos(sign.yaw), y + 0.3 * math.sin(sign.yaw))
            assert world.room_at(*ahead) == world.room(sign.room_id)


def test_every_room_is_reachable_through_doors() -> None:
    for world in _worlds():
        neighbours: dict[str, set[str]] = {r.id: set() for r in world.rooms}
        for door in world.doors:
            a, b = door.rooms
            neighbours[a].add(b)
            neighbours[b].add(a)
        seen, todo = {world.rooms[0].id}, deque([world.rooms[0].id])
        while todo:
            for nxt in neighbours[todo.popleft()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        assert seen == set(neighbours), world.site


def test_robot_can_drive_between_all_rooms_and_doors() -> None:
    for world in _worlds():
        labels, _ = ndimage.label(_clearance(world) > ROBOT_INFLATION)
        points = [r.center for r in world.rooms] + [d.center for d in world.doors]
        reached = {labels[_cell(world, p)] for p in points}
        assert len(reached) == 1 and 0 not in reached, world.site


def test_spawn_is_clear_of_obstacles() -> None:
    for world in _worlds():
        assert _clearance(world)[_cell(world, world.spawn[:2])] >= 0.6


def test_mjcf_loads_with_the_naming_conventions(written: tuple[World, Path], tmp_path: Path) -> None:
    world, out = written
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)  # texture paths are relative, so the folder can move
    model = mujoco.MjModel.from_xml_path(str(moved / "world.xml"))
    geoms = {model.geom(i).name: model.geom(i) for i in range(model.ngeom)}
    assert model.opt.timestep == 0.002
    assert model.vis.quality.shadowsize == 0 and model.vis.quality.offsamples == 0
    assert geoms["floor"].type[0] == mujoco.mjtGeom.mjGEOM_PLANE
    assert all(f"wall_{w.id}" in geoms for w in world.walls)
    for lm in world.landmarks:
        assert geoms[f"lm_{lm.id}"].contype[0] == int(lm.collides)
    assert model.nmocap == len(world.agents) > 0
    assert all(model.body(f"agent_{a.id}").mocapid[0] >= 0 for a in world.agents)


def _looks(scene: Path, views: list[tuple[float, float, float]]) -> list[np.ndarray]:
    """Pictures (96 x 128 RGB, float) from the scene's free camera at (x, y, yaw), 1 m above the floor."""
    model = mujoco.MjModel.from_xml_path(str(scene / "world.xml"))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    pictures = []
    with mujoco.Renderer(model, 96, 128) as renderer:
        for x, y, yaw in views:
            camera.lookat[:] = (x + 0.01 * math.cos(yaw), y + 0.01 * math.sin(yaw), 1.0)
            camera.distance, camera.azimuth, camera.elevation = 0.01, math.degrees(yaw), 0.0
            renderer.update_scene(data, camera=camera)
            pictures.append(renderer.render().astype(float))
    return pictures


def _facing(world: World, wall: Wall, along: float, distance: float) -> tuple[float, float, float]:
    """A view (x, y, yaw) of `wall` from its room, `distance` m off, `along` m from its middle."""
    room = next(r for r in world.rooms if wall_room(wall.material) == r.id)
    (cx, cy, _), (hx, hy, _) = wall.box.center, wall.box.half_size
    if hx > hy:
        toward = 1.0 if room.center[1] > cy else -1.0
        return cx + along, cy + distance * toward, -toward * math.pi / 2
    toward = 1.0 if room.center[0] > cx else -1.0
    return cx + distance * toward, cy + along, math.pi if toward > 0 else 0.0


def test_the_scene_renders_textured_and_lit(written: tuple[World, Path]) -> None:
    world, out = written
    (image,) = _looks(out, [world.spawn])
    assert 40 < image.mean() < 220 and image.std() > 15


def test_textures_stay_modest(written: tuple[World, Path]) -> None:
    _, out = written
    pngs = sorted((out / "textures").glob("*.png"))
    sizes = [Image.open(p).size for p in pngs]
    assert 0 < len(pngs) <= 100
    assert all(height <= 512 for _, height in sizes)
    assert sum(width * height for width, height in sizes) <= 40e6  # 120 MB of RGB in the renderer


def test_walls_and_racks_do_not_repeat_a_tile_along(warehouse: tuple[World, Path]) -> None:
    """The same wall or rack seen from 2 m further along (one texture tile) shows something else: a localizer that
    sees a repeating picture cannot tell where along it the robot is."""
    world, out = warehouse
    aisle = next(r for r in world.rooms if r.kind == "aisle")
    x0, y0, x1, y1 = aisle.bounds
    rack_views = [((x0 + x1) / 2, (y0 + y1) / 2 + dy, math.pi) for dy in (-1.0, 1.0)]  # the west rack, 1 m off
    wall = max(world.walls, key=lambda w: max(w.box.half_size[:2]))
    wall_views = [_facing(world, wall, along, 1.5) for along in (-1.0, 1.0)]
    pictures = _looks(out, rack_views + wall_views)
    for first, second in zip(pictures[::2], pictures[1::2], strict=True):
        assert first.std() > 15  # a textured surface, not the void
        assert np.abs(first - second).mean() > 20


def test_warehouse_aisles_look_alike_and_only_signs_differ(warehouse: tuple[World, Path]) -> None:
    world, out = warehouse
    aisles = [r for r in world.rooms if r.kind == "aisle"]
    racks = [lm for lm in world.landmarks if lm.category == "pallet rack"]
    signs = [lm for lm in world.landmarks if lm.category == "aisle sign"]
    # Between two aisles, two racks back to back, each named by the aisle it faces; one at each end.
    assert len(aisles) >= 3 and len(racks) == 2 * len(aisles)
    assert sorted(Counter(lm.room_id for lm in racks).values()) == [2] * len(aisles)
    for rack in racks:  # each faces its own aisle, and no other
        faces = (rack.box.center[0] - rack.box.half_size[0], rack.box.center[0] + rack.box.half_size[0])
        touched = {a.id for a in aisles if any(abs(f - b) < 1e-3 for f in faces for b in a.bounds[::2])}
        assert touched == {rack.room_id}
    assert len({(lm.color, lm.material) for lm in racks}) == 1
    assert {s.text for s in signs} == {a.name for a in aisles}

    model = mujoco.MjModel.from_xml_path(str(out / "world.xml"))
    looks = {
        (
            model.mat(model.geom(f"lm_{lm.id}").matid[0]).texid[1],
            tuple(model.mat(model.geom(f"lm_{lm.id}").matid[0]).rgba),
        )
        for lm in racks
    }
    assert len(looks) == 1  # one texture, one colour: a rack of one aisle looks as those of the others
    sign_images = {s.text: (out / "textures" / f"sign_{s.id}.png").read_bytes() for s in signs}
    assert len(set(sign_images.values())) == len(aisles)  # each aisle number is drawn into its own texture
    pixels = np.asarray(Image.open(out / "textures" / f"sign_{signs[0].id}.png").convert("L"), dtype=float)
    assert pixels.std() > 30  # text on a plate, not a blank


def test_dynamic_agents_walk_free_floor_in_the_same_building() -> None:
    for kind in WORLD_KINDS:
        static, dynamic = generate_world(kind, SEED), generate_world(kind, SEED, dynamic=True)
        assert static.agents == () and dynamic.agents
        assert (static.walls, static.landmarks, static.spawn) == (dynamic.walls, dynamic.landmarks, dynamic.spawn)
        clearance = _clearance(dynamic)
        for agent in dynamic.agents:
            assert agent.kind in ("person", "cart") and 0.4 <= agent.speed <= 1.0 and len(agent.waypoints) >= 2
            loop = np.asarray([*agent.waypoints, agent.waypoints[0]])
            path = np.concatenate([np.linspace(a, b, 40) for a, b in itertools.pairwise(loop)])
            rows, cols = dynamic.grid.world_to_cell(path).T
            assert (clearance[rows, cols] >= agent.radius).all(), (kind, agent.id)


def test_world_json_round_trips() -> None:
    world = generate_world("office", SEED, dynamic=True)
    assert World.from_json(world.to_json()) == world


@pytest.mark.parametrize("kind", WORLD_KINDS)
def test_landmark_colors_are_names(kind: str) -> None:
    """Colours are semantics people can ask for ("the red sofa"), not render values."""
    world = generate_world(kind, SEED)
    assert {lm.color for lm in world.landmarks} <= COLORS.keys()


def test_each_wall_wears_its_own_texture(written: tuple[World, Path]) -> None:
    """A room whose four sides wore one texture let a view of one wall fit another's points turned 90 degrees."""
    world, out = written
    model = mujoco.MjModel.from_xml_path(str(out / "world.xml"))
    textures = [int(model.mat(model.geom(f"wall_{w.id}").matid[0]).texid[1]) for w in world.walls]
    assert len(set(textures)) == len(textures)


def test_the_walls_either_side_of_a_door_look_different(written: tuple[World, Path]) -> None:
    """Walls on one side of a room, each seen 0.9 m from its west or south end, show different stretches of it.
    When they wore one texture, each starting it at its own end, the two views were the same picture, and a view
    of one wall fitted the other's points metres along."""
    world, out = written
    by_side: dict[str, list[Wall]] = {}
    for wall in (w for w in world.walls if 2 * max(w.box.half_size[:2]) >= 1.8):
        by_side.setdefault(wall_side(wall.material), []).append(wall)
    pairs = [walls[:2] for walls in by_side.values() if len(walls) >= 2]
    assert pairs
    views = [_facing(world, wall, 0.9 - max(wall.box.half_size[:2]), 1.0) for pair in pairs for wall in pair]
    pictures = _looks(out, views)
    differences = [np.abs(a - b).mean() for a, b in zip(pictures[::2], pictures[1::2], strict=True)]
    assert min(differences) > 10, differences
