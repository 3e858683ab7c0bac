"""Text goals on a map built from a generated office: rooms by name, tasks through furniture, ties, nonsense."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy.spatial.transform import Rotation

from models.goals import GoalResolver
from models.landmarks import landmark_table
from models.planning import ClearanceMap, occupancy_grid
from models.text_encoder import TextEncoder
from schemas.map import TABLES, conform_table
from schemas.robot import DEFAULT_ROBOT, camera_mount
from schemas.topics import CAMERAS
from schemas.world import World
from sim.world import generate_world

BOX_PX_AT_1M = 120  # a landmark's box side in a synthetic picture, 1 m away


def node_rows(world: World, spacing: float = 1.0) -> list[dict]:
    """Map nodes on a grid of free floor, cameras and yaws varied, poses of the cameras' optical frames."""
    clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid)
    xmin, ymin, xmax, ymax = world.bounds
    grid = np.stack(np.meshgrid(np.arange(xmin, xmax, spacing), np.arange(ymin, ymax, spacing)), -1).reshape(-1, 2)
    free = grid[clearance.at(grid) >= 0.4]
    rows = []
    for i, (x, y) in enumerate(free):
        camera, yaw = CAMERAS[i % len(CAMERAS)], 2.0 * i
        translation, base_from_camera = camera_mount(DEFAULT_ROBOT, camera)
        map_from_base = Rotation.from_euler("z", yaw)
        position = np.array([x, y, 0.0]) + map_from_base.apply(translation)
        quat = (map_from_base * base_from_camera).as_quat()
        rows.append(
            {
                "node_id": f"n{i}",
                "episode_id": "tour",
                "t_ns": i,
                "camera": camera,
                "image_topic": f"/camera/{camera}/image",
                **{f"position_{a}": v for a, v in zip("xyz", position, strict=True)},
                **{f"orientation_{a}": v for a, v in zip("xyzw", quat, strict=True)},
                "descriptor": [0.0],
                "registered": True,
                "placed_by_odometry": False,
            }
        )
    return rows


def map_tables(world: World, unvisited: str | None = None) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Nodes, landmarks and sightings: a node sees every landmark of its room, bigger when nearer.

    No node lies in the room named `unvisited`, so only the sign at its door tells the map about it.
    """
    nodes = [node for node in node_rows(world) if room_name_at(world, node_base_xy(node)) != unvisited]
    landmarks = [
        {
            "landmark_id": lm.id,
            "category": lm.category,
            "text": lm.text,
            "color": lm.color,
            "material": lm.material,
            "function": lm.function,
            "room": world.room(lm.room_id).name,
            **{f"position_{a}": v for a, v in zip("xyz", lm.box.center, strict=True)},
            "embedding": [0.0],
        }
        for lm in world.landmarks
    ]
    sightings = []
    for node in nodes:
        base = node_base_xy(node)
        room = world.room_at(*base)
        for lm in world.landmarks:
            distance = math.dist(base, lm.box.center[:2])
            if room is not None and lm.room_id == room.id:
                side = round(BOX_PX_AT_1M / distance)  # the box shrinks with distance, as in a picture
                sightings.append(
                    {
                        "node_id": node["node_id"],
                        "landmark_id": lm.id,
                        "visible_fraction": 1 / distance,
                        **{"box_x0": 0, "box_y0": 0, "box_x1": side, "box_y1": side},
                    }
                )
    node_table = conform_table("nodes", pa.table({c: [r[c] for r in nodes] for c in TABLES["nodes"].names}))
    return node_table, landmark_table("landmarks", landmarks), landmark_table("node_landmarks", sightings)


def node_base_xy(node: dict) -> tuple[float, float]:
    translation, base_from_camera = camera_mount(DEFAULT_ROBOT, node["camera"])
    map_from_camera = Rotation.from_quat([node[f"orientation_{a}"] for a in "xyzw"])
    position = np.array([node[f"position_{a}"] for a in "xyz"])
    x, y, _ = position - (map_from_camera * base_from_camera.inv()).apply(translation)
    return (float(x), float(y))


@pytest.fixture(scope="module")
def world(office_world: Path) -> World:
    return World.load(office_world)


@pytest.fixture(scope="module")
def resolver(world: World) -> GoalResolver:
    return GoalResolver(*map_tables(world), TextEncoder.from_pretrained())


def room_name_at(world: World, pose: tuple[float, ...]) -> str | None:
    room = world.room_at(*pose[:2])
    return room.name if room else None


def test_room_names_resolve_to_a_node_inside_the_room(world: World, resolver: GoalResolver) -> None:
    for room in world.rooms:
        goal = resolver.resolve(f"take me to the {room.name}").goal
        assert goal is not None and goal.kind == "room" and goal.room == room.name
        assert room_name_at(world, goal.pose) == room.name


@pytest.mark.parametrize(
    ("instruction", "room"),
    [
        ("I need to print something", "Print room"),
        ("where can I recharge the robot's battery?", "Charging bay"),
        ("I want to write on a whiteboard", "Meeting room A"),
        ("I want a drink of water", "Corridor"),
    ],
)
def test_tasks_resolve_to_the_room_that_serves_them(
    world: World, resolver: GoalResolver, instruction: str, room: str
) -> None:
    goal = resolver.resolve(instruction).goal
    assert goal is not None and goal.room == room and room_name_at(world, goal.pose) == room


def test_landmark_goals_stop_in_free_space_facing_the_landmark(world: World, resolver: GoalResolver) -> None:
    goal = resolver.resolve("I want a drink of water").goal
    assert goal is not None and goal.kind == "landmark" and goal.label.startswith("water cooler")
    cooler = next(lm for lm in world.landmarks if lm.category == "water cooler")
    to_cooler = np.subtract(cooler.box.center[:2], goal.pose[:2])
    assert np.hypot(*to_cooler) > 0.3
    assert abs(math.remainder(math.atan2(to_cooler[1], to_cooler[0]) - goal.pose[2], math.tau)) < 1e-6


def test_equally_good_goals_go_to_the_nearest(world: World, resolver: GoalResolver) -> None:
    plants = [lm for lm in world.landmarks if lm.category == "plant"]
    assert len({lm.room_id for lm in plants}) >= 2
    for plant in plants:
        goal = resolver.resolve("a decorative potted plant", near_xy=plant.box.center[:2]).goal
        assert goal is not None and goal.room == world.room(plant.room_id).name


@pytest.mark.parametrize("nonsense", ["sing me a song", "what is the capital of France?"])
def test_nonsense_is_not_found_and_three_candidates_are_offered(resolver: GoalResolver, nonsense: str) -> None:
    result = resolver.resolve(nonsense)
    assert result.goal is None
    assert len(result.candidates) == 3
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True) and scores[0] < resolver.config.threshold


def test_a_room_only_its_sign_names_has_its_goal_where_the_sign_is_seen(world: World) -> None:
    nodes, landmarks, sightings = map_tables(world, unvisited="Server room")
    goal = (
        GoalResolver(nodes, landmarks, sightings, TextEncoder.from_pretrained()).resolve("go to the Server room").goal
    )
    sign = next(
        lm.id for lm in world.landmarks if lm.text == "Server room" and world.room(lm.room_id).name == "Corridor"
    )
    seeing_sign = sightings.filter(pc.equal(sightings["landmark_id"], sign))["node_id"].to_pylist()
    assert goal is not None and goal.room == "Server room" and goal.node_id in seeing_sign


def test_a_room_is_found_by_what_its_signs_say_it_is_for() -> None:
    """The warehouse's loading dock: its pallet stacks hold "goods waiting to be shipped", its signs say it is
    for truck loading, and every aisle's racks "store pallets of goods"."""
    warehouse = generate_world("warehouse", 0)
    resolver = GoalResolver(*map_tables(warehouse), TextEncoder.from_pretrained())
    goal = resolver.resolve("where can I load goods onto a truck?").goal
    assert goal is not None and goal.room == "Loading dock" and room_name_at(warehouse, goal.pose) == "Loading dock"


def test_a_corridor_whose_pictures_other_rooms_fill_is_still_a_goal() -> None:
    """The warehouse's main aisle: its keyframes look into the aisles, whose racks fill their pictures, so each
    votes for an aisle; what hangs in the main aisle (the signs to the aisles off it) places its goal."""
    warehouse = generate_world("warehouse", 0)
    nodes, landmarks, sightings = map_tables(warehouse)
    racks = [lm.id for lm in warehouse.landmarks if lm.category == "pallet rack"]
    in_main_aisle = [
        n["node_id"] for n in nodes.to_pylist() if room_name_at(warehouse, node_base_xy(n)) == "Main aisle"
    ]
    box = {"box_x0": 0, "box_y0": 0, "box_x1": 300, "box_y1": 300}  # a rack beside the robot fills its picture
    rack_views = [
        {"node_id": node, "landmark_id": rack, "visible_fraction": 1.0, **box}
        for node in in_main_aisle
        for rack in racks
    ]
    sightings = pa.concat_tables([sightings, landmark_table("node_landmarks", rack_views)])
    goal = GoalResolver(nodes, landmarks, sightings, TextEncoder.from_pretrained()).resolve("where is the Main aisle?")
    assert in_main_aisle and goal.goal is not None
    assert goal.goal.room == "Main aisle" and room_name_at(warehouse, goal.goal.pose) == "Main aisle"
