"""Log a map (schemas.map) to Rerun: SfM points, keyframe cameras with their pictures, the graph, landmarks,
the mapped and true trajectories, and a route between two rooms; and the building (schemas.world).

Pure over a `rerun.RecordingStream`, like viz.episode, which draws the building and the graph under a
navigation run. Everything is static and in `map`. The lake the map was built from is optional: it adds the
pictures, the building and the ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import rerun as rr

from datasets.lake import Lake
from datasets.map_store import TopoMap
from datasets.site_log import read_trajectory, recorded_world
from models.routing import Route, RouteGraph
from schemas.topics import GROUND_TRUTH_TOPIC
from schemas.world import World

EDGE_COLORS = {"sequential": [40, 200, 80], "covisibility": [40, 120, 220], "proximity": [230, 160, 30]}
IMAGE_PLANE_M = 0.3  # how far the keyframe frusta reach, so that hundreds of them stay readable


def _positions(nodes: pl.DataFrame) -> np.ndarray:
    return nodes.select("position_x", "position_y", "position_z").to_numpy()


def log_world(rec: rr.RecordingStream, world: World, root: str = "map") -> None:
    """Static scene under `root` (`map`, or an entity placed in it): walls, rooms named at their centres,
    landmarks (named on hover, as there are many)."""
    rec.log("map", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    walls = [w.box for w in world.walls]
    rec.log(
        f"{root}/walls",
        rr.Boxes3D(centers=[b.center for b in walls], half_sizes=[b.half_size for b in walls], colors=[150, 150, 160]),
        static=True,
    )
    rec.log(
        f"{root}/rooms",
        rr.Points3D(
            [(*r.center, 0.05) for r in world.rooms],
            labels=[r.name for r in world.rooms],
            show_labels=True,
            radii=0.1,
            colors=[40, 120, 220],
        ),
        static=True,
    )
    landmarks = world.landmarks
    rec.log(
        f"{root}/landmarks",
        rr.Boxes3D(
            centers=[lm.box.center for lm in landmarks],
            half_sizes=[lm.box.half_size for lm in landmarks],
            labels=[lm.text or f"{lm.color} {lm.category}" for lm in landmarks],
            show_labels=False,
            colors=[230, 160, 30],
        ),
        static=True,
    )


def log_graph(rec: rr.RecordingStream, topo: TopoMap) -> None:
    """The map graph, static in `map`: its nodes (named on hover) and its edges, coloured by kind."""
    nodes = pl.from_arrow(topo.nodes)
    positions = _positions(nodes)
    index = {node: i for i, node in enumerate(nodes["node_id"])}
    rec.log(
        "map/graph/nodes",
        rr.Points3D(positions, labels=nodes["node_id"].to_list(), show_labels=False, radii=0.04, colors=[90, 90, 90]),
        static=True,
    )
    edges = pl.from_arrow(topo.edges)
    for kind, color in EDGE_COLORS.items():
        of_kind = edges.filter(pl.col("kind") == kind)
        strips = [[positions[index[s]], positions[index[t]]] for s, t in of_kind.select("source", "target").rows()]
        rec.log(f"map/graph/{kind}", rr.LineStrips3D(strips, colors=color, radii=0.01), static=True)


def node_rooms(nodes: pl.DataFrame, world: World) -> dict[str, str]:
    """Node id -> name of the room its mapped position lies in; nodes outside every room are left out."""
    rooms = {}
    for node, (x, y, _) in zip(nodes["node_id"], _positions(nodes), strict=True):
        room = world.room_at(x, y)
        if room is not None:
            rooms[node] = room.name
    return rooms


def room_route(topo: TopoMap, world: World, start_room: str, goal_room: str) -> Route:
    """The shortest route from the node nearest the centre of one named room to that of another."""
    nodes = pl.from_arrow(topo.nodes)
    rooms = node_rooms(nodes, world)
    ends = []
    for name in (start_room, goal_room):
        room = next((r for r in world.rooms if r.name == name), None)
        if room is None:
            raise ValueError(f"no room named {name!r}; rooms: {', '.join(sorted(r.name for r in world.rooms))}")
        inside = nodes.filter(pl.col("node_id").is_in([n for n, r in rooms.items() if r == name]))
        if inside.is_empty():
            covered = ", ".join(sorted(set(rooms.values())))
            raise ValueError(f"the map has no node in {name!r}; rooms it covers: {covered}")
        distances = np.linalg.norm(_positions(inside)[:, :2] - np.array(room.center), axis=1)
        ends.append(inside["node_id"][int(np.argmin(distances))])
    return RouteGraph(topo.nodes, topo.edges).route(*ends)


def log_map(
    rec: rr.RecordingStream, topo: TopoMap, lake: Lake | None = None, route_rooms: Sequence[str] | None = None
) -> Route | None:
    """Log the map; with `route_rooms` (start, goal) and a lake to name rooms, also the route, which is returned."""
    rec.log("map", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    nodes = pl.from_arrow(topo.nodes)
    index = {node: i for i, node in enumerate(nodes["node_id"])}
    positions = _positions(nodes)

    if topo.sfm_files:
        points = topo.reconstruction().points3D.values()
        rec.log(
            "map/sfm/points",
            rr.Points3D([p.xyz for p in points], colors=[p.color for p in points], radii=0.02),
            static=True,
        )
    _log_keyframes(rec, topo, nodes, lake)

    log_graph(rec, topo)

    landmarks = pl.from_arrow(topo.landmarks)
    rec.log(
        "map/landmarks",
        rr.Points3D(
            _positions(landmarks) if landmarks.height else np.empty((0, 3)),
            labels=[
                text or f"{color} {category}"
                for text, color, category in landmarks.select("text", "color", "category").rows()
            ],
            colors=[230, 60, 30],
            radii=0.08,
        ),
        static=True,
    )

    keyframes = (
        nodes.filter(pl.col("registered"))
        .sort("episode_id", "t_ns")
        .unique(["episode_id", "t_ns"], keep="first", maintain_order=True)
    )
    for (episode,), rows in keyframes.group_by("episode_id", maintain_order=True):
        rec.log(
            f"map/trajectory/mapped/{episode}",
            rr.LineStrips3D([_positions(rows)], colors=[200, 80, 200], radii=0.02),
            static=True,
        )
    if lake is None:
        return None
    world = recorded_world(lake, nodes["episode_id"].unique().to_list())
    log_world(rec, world)
    for episode in nodes["episode_id"].unique(maintain_order=True):
        truth = read_trajectory(lake, episode, GROUND_TRUTH_TOPIC)
        rec.log(
            f"map/trajectory/ground_truth/{episode}",
            rr.LineStrips3D([truth.positions], colors=[40, 200, 80], radii=0.02),
            static=True,
        )
    if route_rooms is None:
        return None
    route = room_route(topo, world, *route_rooms)
    rec.log(
        "map/route",
        rr.LineStrips3D(
            [positions[[index[n] for n in route.nodes]]],
            colors=[255, 0, 0],
            radii=0.05,
            labels=[f"{' -> '.join(route_rooms)}: {route.length_m:.1f} m"],
        ),
        static=True,
    )
    return route


def _log_keyframes(rec: rr.RecordingStream, topo: TopoMap, nodes: pl.DataFrame, lake: Lake | None) -> None:
    """Each registered node as a camera: its pose, its pinhole from the reconstruction and, with a lake, its picture."""
    registered = nodes.filter(pl.col("registered"))
    if registered.is_empty():
        return
    reconstruction = topo.reconstruction()
    pictures = {}
    if lake is not None:
        wanted = registered.select("episode_id", pl.col("image_topic").alias("topic"), "t_ns").lazy()
        rows = (
            lake.table("images")
            .join(wanted, on=["episode_id", "topic", "t_ns"])
            .select("episode_id", "topic", "t_ns", "format", "data")
            .collect()
        )
        pictures = {(e, topic, t): (fmt, data) for e, topic, t, fmt, data in rows.rows()}
    for row in registered.iter_rows(named=True):
        path = f"map/keyframes/{rr.escape_entity_path_part(row['node_id'])}"
        rec.log(
            path,
            rr.Transform3D(
                translation=[row[f"position_{a}"] for a in "xyz"], quaternion=[row[f"orientation_{a}"] for a in "xyzw"]
            ),
            static=True,
        )
        image = reconstruction.find_image_with_name(row["node_id"])
        camera = reconstruction.cameras[image.camera_id]
        pinhole = rr.Pinhole(
            image_from_camera=camera.calibration_matrix(),
            resolution=(camera.width, camera.height),
            image_plane_distance=IMAGE_PLANE_M,
        )
        rec.log(path, pinhole, static=True)
        picture = pictures.get((row["episode_id"], row["image_topic"], row["t_ns"]))
        if picture is not None:
            rec.log(path, rr.EncodedImage(contents=picture[1], media_type=f"image/{picture[0]}"), static=True)
