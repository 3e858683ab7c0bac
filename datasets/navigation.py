"""The `global` node's navigator, loaded from a map on disk: its localizer, goal resolver and route graph.

Both the dora node and the in-process mission evaluation load it here, so both run the same map the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.lake import Lake, LakeError
from datasets.map_eval import source_lake, world_from_map
from datasets.map_store import TopoMap, key_from_env, read_map
from datasets.site_log import read_pictures
from models.astra_global.localizer import FINE_STAGES, AstraLocalizer, AstraLocalizerConfig, landmark_map
from models.astra_global.model import COMMITTED_CHECKPOINTS, AstraGlobal
from models.goals import GoalResolver
from models.localization import Localizer, LocalizerConfig
from models.mapping.sfm import rig_cameras
from models.navigation import se2
from models.navigation.global_navigator import GlobalNavigator, GlobalParams
from models.navigation.se2 import Pose2
from models.text_encoder import TextEncoder
from schemas.map import MapError
from schemas.messages import decode_jpeg
from schemas.robot import DEFAULT_ROBOT, RobotConfig
from schemas.world import World

LOCALIZATION = ("classical", *FINE_STAGES)  # how the global node localizes: ASTRA_GLOBAL


def read_navigation_map(map_dir: Path) -> TopoMap:
    """The map at `map_dir`, decrypted with ASTRA_MAP_KEY where it is encrypted; MapError says what is wrong."""
    map_dir = Path(map_dir)
    if not map_dir.is_dir():
        raise MapError(f"no map at {map_dir}: build one with `astra map build`")
    return read_map(map_dir, key_from_env())


def check_world_matches(topo_map: TopoMap, world: World) -> None:
    """MapError where the map was built of another building than `world`."""
    site = topo_map.manifest.build.get("site")
    if site != world.site:
        raise MapError(f"the map is of site {site!r} but the world is {world.site!r}: give the map of this building")


def global_navigator(
    topo_map: TopoMap,
    robot: RobotConfig = DEFAULT_ROBOT,
    params: GlobalParams | None = None,
    localization: str = "classical",
) -> GlobalNavigator:
    """A navigator over `topo_map` for a robot of `robot`'s rig, with the bundled text encoder, localizing by one of
    LOCALIZATION: the classical localizer, or Astra-Global's coarse stage with its own fine stage ("astra", which
    reads the keyframes' pictures from the map's lake) or the classical one ("hybrid", from the map alone)."""
    if localization not in LOCALIZATION:
        raise ValueError(f"unknown localization {localization!r}; choose one of {', '.join(LOCALIZATION)}")
    config = LocalizerConfig.for_map(topo_map.manifest.build)
    localizer = Localizer(topo_map.nodes, topo_map.node_features, rig_cameras(robot), config)
    resolver = GoalResolver(topo_map.nodes, topo_map.landmarks, topo_map.node_landmarks, TextEncoder.from_pretrained())
    if localization != "classical":
        pictures = keyframe_pictures(source_lake(topo_map), localizer) if localization == "astra" else None
        landmarks = landmark_map(localizer, topo_map.landmarks, topo_map.node_landmarks, pictures)
        model = AstraGlobal.from_pretrained(COMMITTED_CHECKPOINTS["grpo"])
        localizer = AstraLocalizer(model, landmarks, localizer, AstraLocalizerConfig(fine=localization))
    return GlobalNavigator(localizer, resolver, topo_map.nodes, topo_map.edges, params or GlobalParams())


def keyframe_pictures(lake: Lake, localizer: Localizer) -> list[list[np.ndarray]]:
    """The pictures of each of the localizer's keyframes, one per rig camera, from the lake the map was built from."""
    instants = localizer.keyframe_instants
    jpegs: dict[tuple[str, str, int], bytes] = {}
    for episode in sorted({e for e, _ in instants}):
        found = read_pictures(lake, episode, localizer.rig, [t for e, t in instants if e == episode])
        jpegs |= {(episode, camera, t): data for (camera, t), data in found.items()}
    return [[decode_jpeg(jpegs[episode, c.name, t]) for c in localizer.rig] for episode, t in instants]


def planar_world_from_map(topo_map: TopoMap, lake: Path | str | None = None) -> Pose2:
    """world_from_map (datasets.map_eval) on the floor: x, y, yaw. For evaluation only: it reads the truth from
    `lake` (default: the lake the map was built from)."""
    aligned = world_from_map(topo_map, source_lake(topo_map, lake))
    x, y, _ = aligned.translation
    return float(x), float(y), se2.yaw_of(tuple(aligned.rotation.quat))


def recorded_map_from_world(topo_map: TopoMap) -> Pose2 | None:
    """Where the simulator's world lies in the map, from the truth in the lake the map was built from; None where
    that lake is gone or holds no truth (a real robot's). For drawing the truth beside a run only."""
    try:
        return se2.inverse(planar_world_from_map(topo_map))
    except (LakeError, KeyError, ValueError):
        return None


NO_WORLD_PLACEMENT = (
    "the lake this map was built from holds no ground truth here: the building and the truth are drawn as if the "
    "world were the map's frame"
)
