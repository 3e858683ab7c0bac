"""`astra train global`: Astra-Global's models trained on a training set (`astra dataset global`), with whole
buildings held out, each checkpoint written with a model card naming its data and its held-out figures.

    vpr        the learned place-recognition descriptor (models.vpr), scored against the tiny-image placeholder by
               retrieval on held-out buildings: each building's first tour is the database, its later tours the queries
    detector   the learned landmark detector (models.landmark_detector), trained on the segmentation's boxes and
               scored against them on held-out buildings: precision, recall, attributes, sign text
    astra      Astra-Global (models.astra_global): SFT on coarse and fine localization examples, then GRPO on the
               coarse stage; both checkpoints are kept (astra_global_sft, astra_global), for the ablation

Astra-Global's examples pair the tours of one building: one tour is the map (its instants the keyframes, the
landmarks its frames see the map's list, at their true poses), each instant of the other tour a query: the landmarks
it sees (coarse) and its pose relative to a keyframe the co-visibility filter would offer (fine). A map built by
`astra map build` holds the same things a few centimetres off (its ATE), so the truth stands in for it here.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from datasets.global_frames import FrameSet, read_frames, read_landmarks
from models.astra_global.answers import Answer, AnswerGrammar
from models.astra_global.goals import find_goals
from models.astra_global.grpo import GRPOConfig, train_grpo
from models.astra_global.maps import LandmarkMap, MapKeyframe, coarse_answer, goal_place, leads_to_room
from models.astra_global.model import AstraGlobal, ModelSize
from models.astra_global.prompts import Example, Query, describe_landmark, goal_query
from models.astra_global.sft import SFTConfig, train_sft
from models.astra_global.tokenizer import train_tokenizer
from models.descriptors import GlobalDescriptor, TinyImageDescriptor, VprDescriptor
from models.landmark_detector import LabelledBox, TrainConfig, evaluate_detections, train_detector
from models.landmark_extraction import LandmarkFunctions
from models.vpr import CameraPoses, VprConfig, VprTrainConfig, retrieval_recall, train_vpr
from schemas.global_dataset import GlobalDatasetManifest
from schemas.topics import CAMERAS
from sim.missions import every_instruction
from sim.world import generate_world

FRAME_SIZE = (160, 120)  # as the tours record them; each model shrinks further


@dataclass(frozen=True)
class HeldOut:
    """Buildings kept out of training, by seed: the evaluation's."""

    seeds: tuple[int, ...]

    def split(self, frames: FrameSet) -> tuple[FrameSet, FrameSet]:
        held = np.isin(frames.world_seed, self.seeds)
        return frames.subset(~held), frames.subset(held)


def _split(dataset: Path, held_out: HeldOut, progress: bool) -> tuple[GlobalDatasetManifest, FrameSet, FrameSet]:
    """The dataset's manifest, and its frames to train on and to test on; ValueError where either is empty."""
    manifest = GlobalDatasetManifest.read(dataset)
    train, held = held_out.split(read_frames(dataset, FRAME_SIZE, progress=progress))
    if not len(train) or not len(held):
        counts = f"{len(train)} frames to train and {len(held)} to test"
        raise ValueError(f"held-out seeds {list(held_out.seeds)} leave {counts}")
    return manifest, train, held


def camera_poses(frames: FrameSet) -> CameraPoses:
    """The frames' cameras, grouped by building."""
    return CameraPoses.of(frames.camera_xy, frames.camera_yaw, np.unique(frames.site, return_inverse=True)[1])


def retrieval_by_building(
    describe: GlobalDescriptor, frames: FrameSet, first_tours: set[str], ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Recall@k of each building's later tours against its first tour (`first_tours`: episode ids), pooled."""
    hits: dict[int, list[float]] = {k: [] for k in ks}
    descriptors = describe.describe(list(frames.images))
    poses = camera_poses(frames)
    for site in np.unique(frames.site):
        here = frames.site == site
        database = here & np.isin(frames.episode_id, list(first_tours))
        queries = here & ~database
        if not database.any() or not queries.any():
            continue
        query_poses, database_poses = poses[np.flatnonzero(queries)], poses[np.flatnonzero(database)]
        recall = retrieval_recall(descriptors[queries], query_poses, descriptors[database], database_poses, ks)
        for k in ks:
            hits[k] += [recall[k]] * int(queries.sum())
    return {f"recall@{k}": round(float(np.mean(v)), 3) if v else float("nan") for k, v in hits.items()}


def train_vpr_model(
    dataset: Path, out: Path, held_out: HeldOut, config: VprTrainConfig | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train the VPR descriptor on the dataset's other buildings, score it and the tiny-image descriptor on the held-out
    ones, and save the checkpoint with its model card to `out`; returns the figures."""
    manifest, train, held = _split(dataset, held_out, progress)
    training = train_vpr(train.images, camera_poses(train), config or VprTrainConfig(), VprConfig(), progress)
    first_tours = {site["episodes"][0] for site in manifest.sites.values()}
    figures = {
        "vpr": retrieval_by_building(VprDescriptor(model=training.model), held, first_tours),
        "tiny_image": retrieval_by_building(TinyImageDescriptor(), held, first_tours),
    }
    training.summary |= {
        "dataset": f"{dataset} (lake {manifest.lake} version {manifest.lake_version})",
        "trained on": f"{len(train)} frames of {len(np.unique(train.site))} buildings",
        "held out": f"seeds {list(held_out.seeds)}: {len(held)} frames of {len(np.unique(held.site))} buildings",
        "held-out retrieval (later tours against the first)": figures,
    }
    training.save(str(out))
    return {**training.summary, "out": str(out)}


def labelled_boxes(frames: FrameSet, landmarks: list[dict[str, Any]]) -> list[list[LabelledBox]]:
    """Each frame's sightings as the detector's annotation: box, category, colour, material, sign text."""
    described = {(lm["site"], lm["landmark_id"]): lm for lm in landmarks}
    return [
        [
            LabelledBox(
                (seen["box_x0"], seen["box_y0"], seen["box_x1"], seen["box_y1"]),
                (lm := described[site, seen["landmark_id"]])["category"],
                lm["color"],
                lm["material"],
                lm["text"],
            )
            for seen in sightings
        ]
        for site, sightings in zip(frames.site, frames.sightings, strict=True)
    ]


def train_detector_model(
    dataset: Path, out: Path, held_out: HeldOut, config: TrainConfig | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train the landmark detector on the dataset's other buildings, score it against annotation on the held-out ones,
    and save the checkpoint with its model card to `out`; returns the figures."""
    manifest, train, held = _split(dataset, held_out, progress)
    landmarks = read_landmarks(dataset)
    config = config or TrainConfig()
    model, losses = train_detector(train.images, labelled_boxes(train, landmarks), training=config, progress=progress)
    metrics = evaluate_detections(model.detect(held.images), labelled_boxes(held, landmarks))
    summary = {
        "dataset": f"{dataset} (lake {manifest.lake} version {manifest.lake_version})",
        "trained on": f"{len(train)} frames of {len(np.unique(train.site))} buildings",
        "held out": f"seeds {list(held_out.seeds)}: {len(held)} frames of {len(np.unique(held.site))} buildings",
        "steps": len(losses),
        "final loss (mean of the last tenth of steps)": round(float(np.mean(losses[-max(1, len(losses) // 10) :])), 4),
        "held-out detection against annotation": {
            name: None if isinstance(value, float) and np.isnan(value) else value
            for name, value in asdict(metrics).items()
        },
    }
    model.save_pretrained(str(out))
    LandmarkFunctions.learn(lm for lm in landmarks if lm["site"] in set(train.site)).save(out)
    card = Path(out) / "README.md"
    lines = "\n".join(f"- {key}: {value}" for key, value in summary.items())
    card.write_text(f"{card.read_text()}\n## Training\n\n{lines}\n")
    return {**summary, "out": str(out)}


MODEL_FRAME_SIZE = (128, 96)  # what Astra-Global's vision tower reads: 48 tokens per picture after merging
FINE_REACH_M = 4.0  # fine examples' reference keyframes lie this close: the pose bins reach as far
GOAL_QUERIES = 4  # text goals held out per building, per localization query: each scores every place of the map


@dataclass(frozen=True)
class GoalInstruction:
    """An instruction, the place it names in the model's words (maps.goal_place), and the room it names."""

    instruction: str
    place: str
    room: str


@dataclass(frozen=True)
class AstraExamples:
    """One building's map (one tour) and the examples its other tour's instants make."""

    site: str
    map_episode: str
    query_episode: str
    landmark_rows: list[dict[str, Any]]  # the map list's landmarks (schemas.global_dataset LANDMARKS), in its order
    landmark_map: LandmarkMap
    query_t_ns: list[int]  # the query tour's instants, one coarse example each
    query_poses: list[tuple[float, float, float]]  # base_link at each, in the building's frame
    coarse: list[Example]
    fine: list[Example]
    fine_queries: list[tuple[int, int]]  # each fine example's query instant and reference keyframe
    goals: list[GoalInstruction]  # every instruction of the building (sim.missions.every_instruction)

    @property
    def landmark_ids(self) -> list[str]:
        return [row["landmark_id"] for row in self.landmark_rows]


def landmark_description(row: dict[str, Any]) -> str:
    """A landmark's line in the prompt's map list."""
    return describe_landmark(row["category"], row["color"], row["material"], row["text"])


def _instants(frames: FrameSet, episode: str) -> list[np.ndarray]:
    """The frame indices of each instant of an episode, cameras in the rig's order (schemas.topics.CAMERAS)."""
    here = np.flatnonzero(frames.episode_id == episode)
    instants = []
    for t in np.unique(frames.t_ns[here]):
        at = here[frames.t_ns[here] == t]
        by_camera = {str(frames.camera[i]): i for i in at}
        if set(by_camera) == set(CAMERAS):
            instants.append(np.array([by_camera[c] for c in CAMERAS]))
    return instants


def astra_examples(
    frames: FrameSet,
    landmarks: dict[tuple[str, str], dict[str, Any]],
    map_episode: str,
    query_episode: str,
    seed: int = 0,
) -> AstraExamples:
    """The map of `map_episode` and the coarse and fine examples of `query_episode`'s instants (one building's), and
    every instruction of the building. `landmarks`: every LANDMARKS row by (site, landmark id).

    The map's list is in random order (seeded), so that the model learns landmarks by what they look like rather
    than by where they tend to stand in the list. A fine example's reference is a random one of the first three
    co-visible keyframes within FINE_REACH_M, as the filter would offer it; an instant with none has no fine example.
    """
    rng = np.random.default_rng(seed)
    site = str(frames.site[np.flatnonzero(frames.episode_id == map_episode)[0]])
    map_instants = _instants(frames, map_episode)
    seen_ids = sorted({s["landmark_id"] for rows in map_instants for i in rows for s in frames.sightings[i]})
    listed = [seen_ids[i] for i in rng.permutation(len(seen_ids))]
    position = {landmark: i for i, landmark in enumerate(listed)}

    def seen(rows: np.ndarray) -> tuple[int, ...]:
        ids = {s["landmark_id"] for i in rows for s in frames.sightings[i]}
        return tuple(sorted(position[x] for x in ids if x in position))

    keyframes = [
        MapKeyframe(tuple(frames.base_pose[rows[0]]), seen(rows), [frames.images[i] for i in rows])
        for rows in map_instants
    ]
    listed_rows = [landmarks[site, x] for x in listed]
    descriptions = [landmark_description(r) for r in listed_rows]
    landmark_map = LandmarkMap(
        descriptions,
        keyframes,
        *([r[key] for r in listed_rows] for key in ("room", "category", "text")),
    )
    positions = np.array([k.pose[:2] for k in keyframes])
    examples = AstraExamples(site, map_episode, query_episode, listed_rows, landmark_map, [], [], [], [], [], [])
    for rows in _instants(frames, query_episode):
        images, landmarks, pose = [frames.images[i] for i in rows], seen(rows), tuple(frames.base_pose[rows[0]])
        examples.query_t_ns.append(int(frames.t_ns[rows[0]]))
        examples.query_poses.append(pose)
        examples.coarse.append(Example(landmark_map.coarse_query(images), coarse_answer(landmarks)))
        near = np.linalg.norm(positions - pose[:2], axis=1) <= FINE_REACH_M
        offered = [k for k in landmark_map.covisible(landmarks) if near[k]][:3]
        if offered:
            reference = int(rng.choice(offered))
            answer = landmark_map.fine_answer(landmarks, reference, pose)
            examples.fine.append(Example(landmark_map.fine_query(images, reference), answer))
            examples.fine_queries.append((len(examples.coarse) - 1, reference))
    here = np.flatnonzero(frames.site == site)[0]
    world = generate_world(str(frames.kind[here]), int(frames.world_seed[here]))
    examples.goals.extend(
        GoalInstruction(i.text, goal_place(i.goal_room, i.category, i.family == "landmark"), i.goal_room)
        for i in every_instruction(world)
    )
    return examples


def goal_examples(buildings: Sequence[AstraExamples]) -> list[Example]:
    """Every building's instructions as text goal examples (the instruction in, the place it names out), once per
    building however many of its tour pairs are listed: the answer does not depend on the map."""
    goals = {b.site: b.goals for b in buildings}
    return [Example(goal_query(g.instruction), g.place) for building in goals.values() for g in building]


def building_examples(frames: FrameSet, landmarks: list[dict[str, Any]], seed: int = 0) -> list[AstraExamples]:
    """Every ordered pair of tours of each building: the first as the map and the second as queries, and back."""
    by_id = {(row["site"], row["landmark_id"]): row for row in landmarks}
    examples = []
    for site in np.unique(frames.site):
        episodes = list(dict.fromkeys(frames.episode_id[frames.site == site]))
        for map_episode, query_episode in itertools.permutations(episodes, 2):
            examples.append(astra_examples(frames, by_id, map_episode, query_episode, seed + len(examples)))
    return examples


@dataclass(frozen=True)
class AstraFigures:
    """Held-out figures of an Astra-Global checkpoint on the examples of buildings it never saw."""

    landmark_recall: float  # of the truly seen landmarks, the share the coarse answer names
    landmark_precision: float
    coarse_parsed: float  # share of coarse answers that parse
    coarse_10m: float  # the best co-visible keyframe within 10 m of the truth
    fine_parsed: float
    fine_1m_5deg: float  # fine pose (against its true reference) within 1 m and 5°
    fine_median_m: float | None  # None where most fine answers gave no pose
    fine_median_deg: float | None
    goal_accuracy: float  # the first landmark named for an instruction gets the robot to the room it names


def evaluate_astra(model: AstraGlobal, buildings: Sequence[AstraExamples], per_building: int) -> AstraFigures:
    """The model's coarse and fine answers on up to `per_building` queries of each tour pair, and its text goals on
    up to GOAL_QUERIES times as many instructions of each building whose place the map saw, against the truth."""
    recall, precision, parsed, near = [], [], [], []
    fine_parsed, errors, reached = [], [], []
    for building in buildings:
        pick = np.unique(np.linspace(0, len(building.coarse) - 1, per_building).round().astype(int))
        answers = _answer(model, [building.coarse[i].query for i in pick])
        for i, answer in zip(pick, answers, strict=True):
            truth = set(building.coarse[i].answer.landmarks)
            parsed.append(answer is not None)
            named = set(answer.landmarks) if answer else set()
            recall.append(len(truth & named) / len(truth) if truth else float(not named))
            precision.append(len(truth & named) / len(named) if named else float(not truth))
            candidates = building.landmark_map.covisible(sorted(named))
            best = building.landmark_map.keyframes[candidates[0]].pose if len(candidates) else None
            near.append(best is not None and math.dist(best[:2], building.query_poses[i][:2]) <= 10.0)
        fine_pick = np.unique(np.linspace(0, len(building.fine) - 1, per_building).round().astype(int))
        fine_pick = fine_pick[: len(building.fine)]
        for example, answer in zip(
            [building.fine[i] for i in fine_pick],
            _answer(model, [building.fine[i].query for i in fine_pick]),
            strict=True,
        ):
            fine_parsed.append(answer is not None and answer.pose is not None)
            if fine_parsed[-1]:
                truth = example.answer.pose
                errors.append(
                    (
                        math.hypot(answer.pose.dx - truth.dx, answer.pose.dy - truth.dy),
                        abs(math.degrees(math.remainder(answer.pose.dyaw - truth.dyaw, math.tau))),
                    )
                )
            else:
                errors.append((math.inf, math.inf))
    for building in {b.site: b for b in reversed(buildings)}.values():  # each building's first map
        rows, places = building.landmark_rows, building.landmark_map.goal_places()
        answerable = [goal for goal in building.goals if goal.place in places]  # else the map never saw the place
        pick = np.unique(np.linspace(0, len(answerable) - 1, GOAL_QUERIES * per_building).round().astype(int))
        for goal in [answerable[i] for i in pick[: len(answerable)]]:
            found = find_goals(model, building.landmark_map, goal.instruction)
            row = rows[found[0]] if found else None
            reached.append(row is not None and leads_to_room(row["room"], row["text"], goal.room))
    error = np.array(errors).reshape(-1, 2)
    return AstraFigures(
        landmark_recall=round(float(np.mean(recall)), 3),
        landmark_precision=round(float(np.mean(precision)), 3),
        coarse_parsed=round(float(np.mean(parsed)), 3),
        coarse_10m=round(float(np.mean(near)), 3),
        fine_parsed=round(float(np.mean(fine_parsed)), 3),
        fine_1m_5deg=round(float(np.mean((error[:, 0] <= 1.0) & (error[:, 1] <= 5.0))), 3),
        fine_median_m=_finite(round(float(np.median(error[:, 0])), 2)),
        fine_median_deg=_finite(round(float(np.median(error[:, 1])), 1)),
        goal_accuracy=round(float(np.mean(reached)), 3),
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _answer(model: AstraGlobal, queries: Sequence[Query], batch_size: int = 16) -> list[Answer | None]:
    return [
        a for start in range(0, len(queries), batch_size) for a in model.answer(queries[start : start + batch_size])
    ]


@dataclass(frozen=True)
class AstraTrainConfig:
    # Text goals alone first, a warm start before the pictures: 400 such steps took held-out goals to 1.000 (README,
    # session 22), where judging each landmark against the instruction needed 4,000 to reach 0.82 (session 20).
    goal_sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=500, learning_rate=3e-4))
    # 2,400 batches: about 2,000 of 8 examples with pictures and 400 of 16 text goals (1,200 before session 22).
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=2400))
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(steps=30))
    # Four layers, not six: two checkpoints (SFT and GRPO, for the ablation) must fit the 20 MB of committed weights.
    size: ModelSize = field(default_factory=lambda: ModelSize(layers=4, max_image_pixels=math.prod(MODEL_FRAME_SIZE)))
    # Yaw in 5° bins: 10° bins would round a true heading up to 5° off, the whole of the 1 m / 5° tolerance.
    grammar: AnswerGrammar = field(default_factory=lambda: AnswerGrammar(yaw_step_deg=5.0))
    eval_queries_per_building: int = 12
    seed: int = 0


def train_astra_model(
    dataset: Path, out: Path, held_out: HeldOut, config: AstraTrainConfig = AstraTrainConfig(), progress: bool = True
) -> dict[str, Any]:
    """SFT on the training buildings' text goals alone, then on their coarse, fine and goal examples together, then
    GRPO on their coarse ones; each checkpoint is scored on the held-out buildings and saved with its card: `out`_sft
    and `out`. Returns the figures."""
    manifest = GlobalDatasetManifest.read(dataset)
    frames = read_frames(dataset, MODEL_FRAME_SIZE, progress=progress)
    held = np.isin(frames.world_seed, held_out.seeds)
    if held.all() or not held.any():
        raise ValueError(
            f"held-out seeds {list(held_out.seeds)} leave {int((~held).sum())} frames to train and "
            f"{int(held.sum())} to test"
        )
    landmarks = read_landmarks(dataset)
    train = building_examples(frames.subset(~held), landmarks, config.seed)
    test = building_examples(frames.subset(held), landmarks, config.seed)
    coarse = [e for b in train for e in b.coarse]
    fine = [e for b in train for e in b.fine]
    goals = goal_examples(train)
    torch.manual_seed(config.seed)
    texts = [*(landmark_description(row) for b in train for row in b.landmark_rows)]
    texts += [text for e in goals for text in (e.query.instruction, e.answer)]
    model = AstraGlobal.create(train_tokenizer(texts, config.grammar), config.grammar, config.size)
    data = {
        "dataset": f"{dataset} (lake {manifest.lake} version {manifest.lake_version})",
        "trained on": f"{len(coarse)} coarse, {len(fine)} fine and {len(goals)} goal examples from {len(train)} tour "
        f"pairs of {len({b.site for b in train})} buildings",
        "held out": f"seeds {list(held_out.seeds)}: {len({b.site for b in test})} buildings, "
        f"{config.eval_queries_per_building} queries per tour pair",
        "parameters": sum(p.numel() for p in model.model.parameters()),
    }
    with tqdm(total=config.goal_sft.steps, desc="Astra-Global SFT, text goals", disable=not progress) as bar:
        goal_losses = train_sft(model, goals, config.goal_sft, on_step=lambda _, loss: _tick(bar, loss=loss))
    with tqdm(total=config.sft.steps, desc="Astra-Global SFT", disable=not progress) as bar:
        losses = train_sft(model, [*coarse, *fine, *goals], config.sft, on_step=lambda _, loss: _tick(bar, loss=loss))
    sft_figures = evaluate_astra(model, test, config.eval_queries_per_building)
    sft_card = {
        **data,
        "SFT on text goals alone": asdict(config.goal_sft),
        "final loss on text goals alone": _tail_mean(goal_losses),
        "SFT": asdict(config.sft),
        "final SFT loss": _tail_mean(losses),
    }
    save_astra(model, Path(f"{out}_sft"), {**sft_card, "held-out figures": asdict(sft_figures)})
    reference = AstraGlobal.from_pretrained(Path(f"{out}_sft"))
    with tqdm(total=config.grpo.steps, desc="Astra-Global GRPO", disable=not progress) as bar:
        history = train_grpo(
            model, coarse, config.grpo, reference, on_step=lambda step, s: _tick(bar, reward=s.reward, kl=s.kl)
        )
    grpo_figures = evaluate_astra(model, test, config.eval_queries_per_building)
    grpo_card = {
        **sft_card,
        "GRPO (coarse examples)": asdict(config.grpo),
        "GRPO mean reward, first and last tenth of steps": [
            round(float(np.mean([h.reward for h in history[: max(1, len(history) // 10)]])), 4),
            _tail_mean([h.reward for h in history]),
        ],
    }
    save_astra(model, out, {**grpo_card, "held-out figures": asdict(grpo_figures)})
    return {"sft": asdict(sft_figures), "grpo": asdict(grpo_figures), **data, "out": str(out)}


def save_astra(model: AstraGlobal, out: Path, card: dict[str, Any]) -> None:
    """The checkpoint and its model card (README.md)."""
    model.save_pretrained(out)
    lines = "\n".join(f"- {key}: {value}" for key, value in card.items())
    (Path(out) / "README.md").write_text(f"# Astra-Global\n\n{AstraGlobal.__doc__}\n\n## Training\n\n{lines}\n")


def _tick(bar: tqdm, **figures: float) -> None:
    bar.set_postfix({k: f"{v:.3f}" for k, v in figures.items()}, refresh=False)
    bar.update()
    claim_idle_cores()


def _tail_mean(values: Sequence[float]) -> float:
    return round(float(np.mean(values[-max(1, len(values) // 10) :])), 4)


def run_trainings(trainings: Mapping[str, Callable[[], dict[str, Any]]], processes: int) -> dict[str, dict[str, Any]]:
    """Each training's summary, by name. With more than one process, the trainings run side by side in fresh
    processes, in the order given (the longest first, so that the short ones share the other cores), each with its
    share of the cores as torch threads and its own progress bar line; once the others are done, the first takes
    every core. Trainings must pickle (functools.partial of this module's functions)."""
    if processes <= 1 or len(trainings) <= 1:
        return {name: train() for name, train in trainings.items()}
    threads = max(1, (os.cpu_count() or 1) // processes)
    spawn = multiprocessing.get_context("spawn")  # a forked torch can hang in its thread pools
    with spawn.Manager() as manager, ProcessPoolExecutor(processes, mp_context=spawn) as pool:
        others_done = manager.Event()
        futures = {
            name: pool.submit(_train_in_worker, train, threads, min(i, processes - 1), others_done if i == 0 else None)
            for i, (name, train) in enumerate(trainings.items())
        }
        wait(list(futures.values())[1:])
        others_done.set()
        return {name: future.result() for name, future in futures.items()}


# Set in the worker of a run's first training: once it is set, the other trainings are done and their cores idle.
_others_done: Any = None


def _train_in_worker(
    train: Callable[[], dict[str, Any]], threads: int, bar_line: int, others_done: Any = None
) -> dict[str, Any]:
    global _others_done
    _others_done = others_done
    torch.set_num_threads(threads)
    os.environ["TQDM_POSITION"] = str(bar_line)  # tqdm reads TQDM_* settings from the environment
    return train()


def claim_idle_cores() -> None:
    """Between training steps, in the training's own thread (torch's thread count is per thread under OpenMP): every
    core once the run's other trainings are done. The Astra-Global SFT would otherwise go on with one thread for
    three quarters of the run while the other core idles."""
    global _others_done
    if _others_done is not None and _others_done.is_set():
        torch.set_num_threads(os.cpu_count() or 1)
        _others_done = None
