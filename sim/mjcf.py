"""The MuJoCo scene of a world (world.xml): floor, ceiling, lights, walls, landmarks and agent bodies.

The XML text is byte-stable: numbers are written with a fixed precision, and colours are drawn from the world's
seeded generators.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np

from schemas.world import Agent, Box, Landmark, Room, World
from sim.layout import GRID_MARGIN, world_rng
from sim.textures import TILE, landmark_texture, wall_lengths
from sim.vocabulary import COLORS, FLOOR_USES, floor_use

MATERIAL_TILE = 0.5


def _fmt(*values: float) -> str:
    """Fixed 4-decimal formatting, so the XML text is byte-stable."""
    text = (f"{v:.4f}".rstrip("0").rstrip(".") for v in values)
    return " ".join("0" if t == "-0" else t for t in text)


def _floor_texture(room: Room) -> str:
    return f"floor_{floor_use(room.kind)}"


def _rgba(color: tuple[float, float, float]) -> str:
    return _fmt(*color, 1.0)


def _local_size(box: Box, yaw: float) -> tuple[float, float, float]:
    """Half-sizes in the frame turned by yaw (a multiple of 90 degrees) whose AABB is `box`."""
    hx, hy, hz = box.half_size
    return (hy, hx, hz) if abs(math.sin(yaw)) > 0.5 else (hx, hy, hz)


def _add_landmark(asset: ET.Element, body: ET.Element, lm: Landmark) -> None:
    material = f"mat_{lm.id}"
    hx, hy, hz = _local_size(lm.box, lm.yaw)
    if lm.kind == "sign" or lm.category == "pallet rack":  # a sign's plate, or every bay of a rack's length
        repeat, rgba = (1.0, 1.0), (1.0, 1.0, 1.0)
    else:
        repeat, rgba = (2 * max(hx, hy) / MATERIAL_TILE, 2 * hz / MATERIAL_TILE), COLORS[lm.color]
    ET.SubElement(
        asset, "material", name=material, texture=landmark_texture(lm), texrepeat=_fmt(*repeat), rgba=_rgba(rgba)
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


def scene(world: World, texture_names: list[str]) -> str:
    """world.xml: the MJCF scene of a world, loadable as is, with its textures under textures/."""
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
    ET.SubElement(asset, "material", name="floor", texture=f"floor_{FLOOR_USES[1]}", **uniform)
    ET.SubElement(asset, "material", name="ceiling", texture="ceiling", **uniform)
    tint_rng = world_rng(world.seed, world.kind, "floor tints")
    for room in world.rooms:
        tint = tuple(tint_rng.uniform(0.8, 1.0, 3)) if room.kind == "room" else (1.0, 1.0, 1.0)
        ET.SubElement(
            asset, "material", name=f"floor_{room.id}", texture=_floor_texture(room), rgba=_rgba(tint), **uniform
        )
    lengths = wall_lengths(world)  # a wall texture covers the longest wall wearing it once
    for name in (n for n in texture_names if n.startswith("wall_")):
        repeat = _fmt(2 / lengths[name], 2 / TILE)
        ET.SubElement(asset, "material", name=name, texture=name, texuniform="true", texrepeat=repeat)

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
        _add_agent(body, agent, world_rng(world.seed, world.kind, f"agent:{agent.id}"))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
