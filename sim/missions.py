"""Navigation missions for the evaluation: a free start pose, and an instruction that names a place in another room.

Instructions come from the phrasing bank in sim/vocabulary.py and fall into four families: a room by name ("take me
to the Print room"), a task done in a room ("where can I print something?"), a piece of furniture qualified by its
room ("the sofa in the Lounge") and a task done with a piece of furniture ("I want to get a glass of water").

Every mission is well posed in its building: a task names exactly one room of the world (all rooms count, mapped or
not), else it is never asked; "print something" is left out where a print room and a copier stand apart, and
"put out a fire" wherever extinguishers hang in several rooms, and "go to sleep" where beds stand in several.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.planning import ClearanceMap, occupancy_grid
from schemas.world import Room, World
from sim.vocabulary import ITEM_TASKS, LANDMARK_PHRASINGS, ROOM_PHRASINGS, ROOM_TASKS, TASK_PHRASINGS

FAMILIES = ("room", "room_task", "landmark", "landmark_task")
START_CLEARANCE_M = 0.5
# From where each person or cart stands when the mission begins: they do not avoid the robot, and one that starts
# beside it, or a second away walking at it, hits it before it has seen them move.
START_AGENT_GAP_M = 2.5
_START_TRIES = 1000


@dataclass(frozen=True)
class Mission:
    start: tuple[float, float, float]  # x, y, yaw of base_link in the world frame
    start_room: str  # room name
    instruction: str
    family: str  # one of FAMILIES
    target_id: str  # the room's id for room families, the landmark's for landmark families
    goal_room: str  # name of the room the instruction names, where the robot should end up


@dataclass(frozen=True)
class _Goal:
    room: Room
    family: str
    target_id: str
    text: str  # the template's fillings; one is drawn per mission
    template_kind: str  # "room" | "task" | "landmark"
    category: str = ""  # the furniture's category, for the landmark families


def _task_rooms(world: World) -> dict[str, set[str]]:
    """Task -> ids of the rooms of `world` where it can be done, by the room's name or by its furniture."""
    rooms: dict[str, set[str]] = defaultdict(set)
    for room in world.rooms:
        for task in ROOM_TASKS.get(room.name, ()):
            rooms[task].add(room.id)
    for landmark in world.landmarks:
        for task in ITEM_TASKS.get(landmark.category, ()) if landmark.kind == "object" else ():
            rooms[task].add(landmark.room_id)
    return rooms


def _goals(world: World) -> list[_Goal]:
    """Every well-posed goal of the world, in a fixed order."""
    task_rooms = _task_rooms(world)
    goals = [_Goal(room, "room", room.id, room.name, "room") for room in world.rooms]
    goals += [
        _Goal(room, "room_task", room.id, task, "task")
        for room in world.rooms
        for task in ROOM_TASKS.get(room.name, ())
        if task_rooms[task] == {room.id}
    ]
    seen: set[tuple[str, str]] = set()  # one goal per category and room: "the sofa in the Lounge" names either
    for landmark in world.landmarks:
        room = world.room(landmark.room_id)
        if landmark.kind != "object" or (landmark.category, room.id) in seen:
            continue
        seen.add((landmark.category, room.id))
        goals.append(_Goal(room, "landmark", landmark.id, landmark.category, "landmark", landmark.category))
        goals += [
            _Goal(room, "landmark_task", landmark.id, task, "task", landmark.category)
            for task in ITEM_TASKS.get(landmark.category, ())
            if task_rooms[task] == {room.id}
        ]
    return goals


def _phrasings(goal: _Goal) -> list[str]:
    """The goal in every phrasing of its template kind."""
    if goal.template_kind == "room":
        return [phrasing.format(room=goal.text) for phrasing in ROOM_PHRASINGS]
    if goal.template_kind == "task":
        return [phrasing.format(task=goal.text) for phrasing in TASK_PHRASINGS]
    return [phrasing.format(landmark=goal.text, room=goal.room.name) for phrasing in LANDMARK_PHRASINGS]


def _instruction(goal: _Goal, rng: np.random.Generator) -> str:
    return str(rng.choice(_phrasings(goal)))


@dataclass(frozen=True)
class Instruction:
    """An instruction the missions may give in a world, and what it names."""

    text: str
    family: str  # one of FAMILIES
    goal_room: str  # name of the room it names
    category: str  # the named furniture's category for the landmark families, else ""


def every_instruction(world: World) -> list[Instruction]:
    """Every instruction a mission may give in `world` (each well-posed goal in each phrasing), in a fixed order:
    what a model that turns instructions into goals learns from."""
    return [
        Instruction(text, goal.family, goal.room.name, goal.category)
        for goal in _goals(world)
        for text in _phrasings(goal)
    ]


def _free_start(
    room: Room, clearance: ClearanceMap, agents_xy: np.ndarray, rng: np.random.Generator
) -> tuple[float, float, float] | None:
    """A pose with START_CLEARANCE_M of clearance and START_AGENT_GAP_M from every agent; None if none is found."""
    xmin, ymin, xmax, ymax = room.bounds
    for _ in range(_START_TRIES):
        xy = rng.uniform((xmin, ymin), (xmax, ymax))
        near_agent = len(agents_xy) and np.hypot(*(agents_xy - xy).T).min() < START_AGENT_GAP_M
        if clearance.at(xy) >= START_CLEARANCE_M and not near_agent:
            return (float(xy[0]), float(xy[1]), float(rng.uniform(-math.pi, math.pi)))
    return None


def sample_missions(world: World, n: int, seed: int, rooms: Sequence[str] | None = None) -> list[Mission]:
    """`n` missions, the same for the same seed, among the rooms named in `rooms` (default: all rooms).

    Each starts at a uniform random pose with START_CLEARANCE_M of clearance, START_AGENT_GAP_M from where people
    and carts start, in a uniform random room, and names a goal in another room: a uniform random family, then a
    uniform random goal of that family.
    """
    allowed = [room for room in world.rooms if rooms is None or room.name in rooms]
    if len(allowed) < 2:
        raise ValueError(f"missions need two rooms to go between, got {[r.name for r in allowed]}")
    goals = [goal for goal in _goals(world) if goal.room in allowed]
    clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid)
    agents_xy = np.array([agent.waypoints[0] for agent in world.agents]).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    missions = []
    no_start: set[str] = set()
    while len(missions) < n:
        start_room = allowed[rng.integers(len(allowed))]
        family = FAMILIES[rng.integers(len(FAMILIES))]
        options = [goal for goal in goals if goal.family == family and goal.room != start_room]
        if not options:
            continue
        if (start := _free_start(start_room, clearance, agents_xy, rng)) is None:
            no_start.add(start_room.name)
            if len(no_start) == len(allowed):
                gaps = f"{START_CLEARANCE_M} m from walls and {START_AGENT_GAP_M} m from agents"
                raise ValueError(f"no room has a start {gaps}")
            continue
        goal = options[rng.integers(len(options))]
        missions.append(
            Mission(
                start=start,
                start_room=start_room.name,
                instruction=_instruction(goal, rng),
                family=family,
                target_id=goal.target_id,
                goal_room=goal.room.name,
            )
        )
    return missions
