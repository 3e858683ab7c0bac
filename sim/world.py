"""Procedural buildings: generate a world and write it out for the simulator.

The concerns live in their own modules: what buildings are made of (`sim.vocabulary`), the floor plan
(`sim.layout`), the textures (`sim.textures`) and the MuJoCo scene (`sim.mjcf`); the occupancy grid is the
planner's (`models.planning`). A world is a pure function of (kind, seed, dynamic).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from schemas.world import WORLD_KINDS, World
from sim import layout, mjcf, textures


def generate_world(kind: str, seed: int, dynamic: bool = False) -> World:
    """A building of the given kind; the same (kind, seed, dynamic) always gives the same world."""
    if kind not in WORLD_KINDS:
        raise ValueError(f"unknown world kind {kind!r}; valid kinds: {', '.join(WORLD_KINDS)}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    world = layout.building(kind, seed)
    # Agents draw from their own generator, so the building is the same with and without them.
    return replace(world, agents=layout.agents(world)) if dynamic else world


def write_world(world: World, out_dir: Path) -> None:
    """Write out_dir/world.json, out_dir/world.xml (MJCF, loadable as is) and out_dir/textures/*.png."""
    out_dir = Path(out_dir)
    texture_dir = out_dir / "textures"
    texture_dir.mkdir(parents=True, exist_ok=True)
    images = textures.world_textures(world, lambda name: layout.world_rng(world.seed, world.kind, f"texture:{name}"))
    for stale in sorted(set(texture_dir.glob("*.png")) - {texture_dir / f"{name}.png" for name in images}):
        stale.unlink()  # left over from an earlier world written here
    for name, image in images.items():
        image.save(texture_dir / f"{name}.png", format="PNG", compress_level=1)  # noise barely compresses; 4x faster
    (out_dir / "world.xml").write_text(mjcf.scene(world, sorted(images)))
    world.save(out_dir / "world.json")
