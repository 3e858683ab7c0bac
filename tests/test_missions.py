"""The mission sampler on generated buildings: free starts, goals in other rooms, well-posed instructions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.planning import ClearanceMap, occupancy_grid
from schemas.world import World
from sim import missions as missions_module
from sim.missions import FAMILIES, START_AGENT_GAP_M, START_CLEARANCE_M, Mission, every_instruction, sample_missions
from sim.vocabulary import ITEM_TASKS, ROOM_PHRASINGS, ROOM_TASKS
from sim.world import generate_world, write_world


@pytest.fixture(scope="module", params=["office", "warehouse"])
def world(request: pytest.FixtureRequest, office_world: Path) -> World:
    return World.load(office_world) if request.param == "office" else generate_world("warehouse", 0)


@pytest.fixture(scope="module")
def missions(world: World) -> list[Mission]:
    return sample_missions(world, 200, seed=3)


def rooms_for_task(world: World, task: str) -> set[str]:
    """Names of the rooms where `task` can be done, by the room's name or by a piece of its furniture."""
    by_name = {room.name for room in world.rooms if task in ROOM_TASKS.get(room.name, ())}
    by_furniture = {
        world.room(lm.room_id).name
        for lm in world.landmarks
        if lm.kind == "object" and task in ITEM_TASKS.get(lm.category, ())
    }
    return by_name | by_furniture


def test_starts_are_free_and_goals_lie_in_another_room(world: World, missions: list[Mission]) -> None:
    clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid)
    for mission in missions:
        x, y, _ = mission.start
        assert clearance.at((x, y)) >= START_CLEARANCE_M
        assert world.room_at(x, y).name == mission.start_room
        assert mission.goal_room != mission.start_room
    assert {m.family for m in missions} == set(FAMILIES)


def test_instructions_name_their_target_and_only_it(world: World, missions: list[Mission]) -> None:
    tasks = set().union(*ROOM_TASKS.values(), *ITEM_TASKS.values())
    landmarks = {lm.id: lm for lm in world.landmarks}
    for mission in missions:
        if mission.family.startswith("room"):
            assert world.room(mission.target_id).name == mission.goal_room
        else:
            assert world.room(landmarks[mission.target_id].room_id).name == mission.goal_room
        if mission.family == "room":
            assert mission.goal_room in mission.instruction
        elif mission.family == "landmark":
            assert landmarks[mission.target_id].category in mission.instruction
            assert mission.goal_room in mission.instruction
        else:
            task = max((task for task in tasks if task in mission.instruction), key=len)
            assert rooms_for_task(world, task) == {mission.goal_room}


def test_ambiguous_tasks_are_never_asked() -> None:
    warehouse = generate_world("warehouse", 0)
    assert len(rooms_for_task(warehouse, "put out a fire")) > 1  # extinguishers in both cross aisles
    assert not any("put out a fire" in m.instruction for m in sample_missions(warehouse, 300, seed=0))
    home = generate_world("home", 0)
    assert rooms_for_task(home, "go to sleep") == {"Bedroom", "Guest bedroom"}  # a bed stands in each
    assert not any("go to sleep" in m.instruction for m in sample_missions(home, 300, seed=0))


def test_missions_are_the_same_for_a_seed_and_keep_to_the_rooms_given(world: World) -> None:
    assert sample_missions(world, 20, seed=5) == sample_missions(world, 20, seed=5)
    assert sample_missions(world, 20, seed=5) != sample_missions(world, 20, seed=6)
    rooms = [room.name for room in world.rooms[:3]]
    for mission in sample_missions(world, 50, seed=1, rooms=rooms):
        assert mission.start_room in rooms and mission.goal_room in rooms
    with pytest.raises(ValueError, match="two rooms"):
        sample_missions(world, 1, seed=0, rooms=rooms[:1])


def test_starts_keep_away_from_where_people_and_carts_start(monkeypatch: pytest.MonkeyPatch) -> None:
    world = generate_world("office", 0, dynamic=True)
    agents = np.array([agent.waypoints[0] for agent in world.agents])

    def nearest_agent(missions: list[Mission]) -> float:
        starts = np.array([m.start[:2] for m in missions])
        return float(np.hypot(*(starts[:, None] - agents[None]).transpose(2, 0, 1)).min())

    assert nearest_agent(sample_missions(world, 40, seed=3)) >= START_AGENT_GAP_M
    monkeypatch.setattr(missions_module, "START_AGENT_GAP_M", 0.0)
    assert nearest_agent(sample_missions(world, 40, seed=3)) < START_AGENT_GAP_M, "without the rule, some start close"


def test_eval_refuses_a_cached_building_the_simulator_now_draws_differently(tmp_path: Path) -> None:
    """A work folder from an older generator (here: another seed's world under this seed's name) would be toured,
    mapped and scored as if it were this building; `astra eval mission` refuses it, before any tour."""
    work = tmp_path / "office-3"
    write_world(generate_world("office", 4), work / "world")
    astra = Path(sys.executable).parent / "astra"
    argv = ["eval", "mission", "--kind", "office", "--seed", "3", "--work", str(work), "--missions", "1"]
    proc = subprocess.run([astra, *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "draws differently" in proc.stderr and "Traceback" not in proc.stderr
    assert not (work / "logs").exists()  # refused before the tour


def test_every_instruction_holds_each_mission_with_what_it_names(world: World, missions: list[Mission]) -> None:
    named = {(i.text, i.family, i.goal_room, i.category) for i in every_instruction(world)}
    category = {landmark.id: landmark.category for landmark in world.landmarks}
    for m in missions:
        asked = category[m.target_id] if m.family.startswith("landmark") else ""
        assert (m.instruction, m.family, m.goal_room, asked) in named
    # Each goal in every phrasing of its kind: every room in each room phrasing.
    assert sum(i.family == "room" for i in every_instruction(world)) == len(world.rooms) * len(ROOM_PHRASINGS)
