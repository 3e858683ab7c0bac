"""A learned landmark detector: boxes, category, colour, material and, for signs, the text, from one RGB image.

CenterNet-style and single-scale: a tiny CNN with a two-level top-down path gives stride-4 features, where a heatmap
marks landmark centres and, at each centre cell, the box (sub-cell offset and log size) and logits for category,
colour and material are read off. Stride 4 because landmarks are small at the frames' 160x120 (signs median 10x8
pixels, see the report in issue 11); coarser strides merge neighbouring signs into one cell.

Sign text is read by a small CTC reader over a crop of the box in the input image: a CTC reader spells character by
character, so it can write texts it never saw as a whole (rooms of held-out buildings), which a classifier over the
training set's texts cannot. Which categories carry text, and every label vocabulary, is data: the training set's,
kept in the checkpoint's config (models/ never reads sim/).

Boxes are half-open pixel ranges (models.landmarks): `image[y0:y1, x0:x1]` crops the landmark.
"""

# No `from __future__ import annotations`: PyTorchModelHubMixin rebuilds the config from its live annotation.
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models.hub import HubModel

STRIDE = 4  # input pixels per output cell
Box = tuple[int, int, int, int]  # x0, y0, x1, y1, half-open


@dataclass(frozen=True)
class LabelledBox:
    """A landmark in an image: what the annotation says, and what a detection claims."""

    box: Box
    category: str
    color: str
    material: str
    text: str  # "" for objects


@dataclass(frozen=True)
class Detection(LabelledBox):
    score: float  # heatmap peak, 0..1


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture and label vocabularies; `train_detector` fills the vocabularies from its training set."""

    categories: tuple[str, ...] = ()
    colors: tuple[str, ...] = ()
    materials: tuple[str, ...] = ()
    text_categories: tuple[str, ...] = ()  # categories whose landmarks carry text (signs)
    alphabet: str = ""  # characters of the training texts; CTC's blank is class 0
    widths: tuple[int, int, int, int] = (24, 32, 64, 96)  # backbone channels at strides 2, 4, 8, 16
    head_width: int = 32
    crop_size: tuple[int, int] = (16, 48)  # height, width of a sign crop for the reader
    crop_margin: float = 0.1  # of the box size on each side, so the text's edges are in the crop
    reader_width: int = 64
    score_threshold: float = 0.3
    max_detections: int = 32

    def __post_init__(self) -> None:
        # JSON (config.json) gives lists back; keep the config hashable and comparable.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 3.0
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    brightness_jitter: float = 0.3  # images are scaled by exp(U(-j, j)), as the cameras' auto-exposure varies
    box_jitter: float = 0.1  # of the box size, on the reader's training crops, as detected boxes are off
    crops_per_text: int = 4  # jittered crops of each text per step: the reader learns from few signs per batch
    seed: int = 0


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class _TextReader(nn.Module):
    """Crop (3, h, w) -> per-column character logits (w / 2, batch, alphabet + 1) for CTC."""

    def __init__(self, classes: int, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv(3, 32), nn.MaxPool2d(2), _conv(32, width), nn.MaxPool2d((2, 1)), _conv(width, width)
        )
        self.sequence = nn.GRU(width, width, bidirectional=True)
        self.classify = nn.Linear(2 * width, classes)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        columns = self.features(crops).mean(dim=2).permute(2, 0, 1)  # (time, batch, width)
        return self.classify(self.sequence(columns)[0])


class LandmarkDetector(nn.Module, HubModel):
    """Landmarks in RGB images of any size (the frames' 160x120 by default): see the module docstring."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        w2, w4, w8, w16 = config.widths
        self.down2 = _conv(3, w2, 2)
        self.down4 = _conv(w2, w4, 2)
        self.down8 = nn.Sequential(_conv(w4, w8, 2), _conv(w8, w8))
        self.down16 = nn.Sequential(_conv(w8, w16, 2), _conv(w16, w16))
        # The top-down path adds 1x1 projections (FPN): a concatenation would cost most of the compute at stride 4.
        self.lateral8 = nn.Conv2d(w16, w8, 1)
        self.smooth8 = _conv(w8, w8)
        self.lateral4 = nn.Conv2d(w4, config.head_width, 1)
        self.top4 = nn.Conv2d(w8, config.head_width, 1)
        self.heads = nn.Sequential(
            _conv(config.head_width, config.head_width),
            nn.Conv2d(config.head_width, 5 + len(config.categories) + len(config.colors) + len(config.materials), 1),
        )
        with torch.no_grad():  # a centre prior of 0.1, as CenterNet starts
            self.heads[-1].bias[0] = -math.log(9.0)
        self.reader = _TextReader(len(config.alphabet) + 1, config.reader_width)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (B, 3, H, W) in 0..1 -> per-cell maps at stride 4: heatmap logits, box, and attribute logits."""
        x4 = self.down4(self.down2(images))
        x8 = self.down8(x4)
        x16 = self.down16(x8)
        y8 = self.smooth8(x8 + F.interpolate(self.lateral8(x16), size=x8.shape[2:], mode="nearest"))
        y4 = self.lateral4(x4) + F.interpolate(self.top4(y8), size=x4.shape[2:], mode="nearest")
        out = self.heads(y4)
        c = self.config
        sizes = [1, 4, len(c.categories), len(c.colors), len(c.materials)]
        heatmap, box, category, color, material = torch.split(out, sizes, dim=1)
        return {"heatmap": heatmap[:, 0], "box": box, "category": category, "color": color, "material": material}

    def read(self, images: torch.Tensor, image_index: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """CTC logits (time, n, alphabet + 1) of the text in float boxes (n, 4) of images[image_index]."""
        return self.reader(_crops(images, image_index, boxes, self.config.crop_size, self.config.crop_margin))

    @torch.no_grad()
    def detect(self, images: np.ndarray | Sequence[np.ndarray], batch_size: int = 64) -> list[list[Detection]]:
        """The landmarks in each RGB (H, W, 3) uint8 image, best first; `batch_size` images at a time, so that
        memory does not grow with the number of images."""
        self.eval()
        with torch.inference_mode():
            return [
                found
                for start in range(0, len(images), batch_size)
                for found in self._detect(np.stack(images[start : start + batch_size]))
            ]

    def _detect(self, images: np.ndarray) -> list[list[Detection]]:
        batch = _to_tensor(images)
        out = self(batch)
        c = self.config
        height, width = batch.shape[2:]
        scores = torch.sigmoid(out["heatmap"])
        peaks = scores * (F.max_pool2d(scores[:, None], 3, 1, 1)[:, 0] == scores)
        top_scores, top_cells = peaks.flatten(1).topk(min(c.max_detections, peaks[0].numel()), dim=1)
        detections = []
        for b in range(len(batch)):
            keep = top_scores[b] >= c.score_threshold
            cells = top_cells[b][keep]
            rows, cols = cells // peaks.shape[2], cells % peaks.shape[2]
            box = out["box"][b][:, rows, cols]
            cx, cy = (cols + box[0]) * STRIDE, (rows + box[1]) * STRIDE
            w, h = box[2].exp(), box[3].exp()
            boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).round()
            boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([width, height, width, height]))
            labels = [
                [vocabulary[i] for i in out[name][b][:, rows, cols].argmax(0).tolist()]
                for name, vocabulary in (("category", c.categories), ("color", c.colors), ("material", c.materials))
            ]
            texts = [""] * len(cells)
            signs = [i for i, category in enumerate(labels[0]) if category in c.text_categories]
            if signs:
                logits = self.read(batch, torch.full((len(signs),), b), boxes[signs])
                for i, text in zip(signs, _ctc_decode(logits, c.alphabet), strict=True):
                    texts[i] = text
            detections.append(
                [
                    Detection(tuple(int(v) for v in boxes[i].tolist()), *(lab[i] for lab in labels), texts[i], score)
                    for i, score in enumerate(top_scores[b][keep].tolist())
                ]
            )
        return detections


def train_detector(
    images: np.ndarray,
    targets: Sequence[Sequence[LabelledBox]],
    config: DetectorConfig = DetectorConfig(),
    training: TrainConfig = TrainConfig(),
    progress: bool = True,
) -> tuple[LandmarkDetector, list[float]]:
    """A detector trained on RGB images (N, H, W, 3) uint8 and their landmarks; also the mean loss of every step.

    The label vocabularies of `config` are replaced by the training set's. A tqdm bar on stderr shows the loss
    and images per second.
    """
    boxes = [box for image_targets in targets for box in image_targets]
    config = dataclasses.replace(
        config,
        categories=tuple(sorted({b.category for b in boxes})),
        colors=tuple(sorted({b.color for b in boxes})),
        materials=tuple(sorted({b.material for b in boxes})),
        text_categories=tuple(sorted({b.category for b in boxes if b.text})),
        alphabet="".join(sorted({ch for b in boxes for ch in b.text})),
    )
    torch.manual_seed(training.seed)
    rng = np.random.default_rng(training.seed)
    model = LandmarkDetector(config)
    encoded = [_encode_targets(t, config) for t in targets]
    steps = max(1, round(training.epochs * len(images) / training.batch_size))
    optimizer = torch.optim.AdamW(model.parameters(), training.learning_rate, weight_decay=training.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, training.learning_rate, total_steps=steps)
    losses = []
    model.train()
    start = time.perf_counter()
    with tqdm(total=steps, desc="landmark detector", unit="step", file=sys.stderr, disable=not progress) as bar:
        for step in range(steps):
            batch = rng.choice(len(images), min(training.batch_size, len(images)), replace=False)
            gain = np.exp(rng.uniform(-training.brightness_jitter, training.brightness_jitter, (len(batch), 1, 1, 1)))
            pixels = (_to_tensor(images[batch]) * torch.from_numpy(gain).float()).clamp(0, 1)
            loss = _loss(model, pixels, [encoded[i] for i in batch], training, rng)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(
                loss=f"{losses[-1]:.3f}", img_s=f"{(step + 1) * len(batch) / (time.perf_counter() - start):.0f}"
            )
    model.eval()
    return model, losses


@dataclass(frozen=True)
class DetectionMetrics:
    """Detections against annotation: a match has IoU >= the threshold and the same category."""

    precision: float
    recall: float
    color_accuracy: float  # on matches
    material_accuracy: float
    text_exact_match: float  # on matched boxes that carry text; nan without any
    text_character_error: float  # edit distance over length of the true texts, on the same boxes
    detections: int
    targets: int
    matches: int


def evaluate_detections(
    detections: Sequence[Sequence[LabelledBox]], targets: Sequence[Sequence[LabelledBox]], iou_threshold: float = 0.5
) -> DetectionMetrics:
    """Precision and recall of detections (best first per image, as `detect` gives them), attribute accuracy."""
    matches = []
    for found, truth in zip(detections, targets, strict=True):
        free = list(truth)
        for detection in found:
            candidates = [t for t in free if t.category == detection.category]
            ious = [box_iou(detection.box, t.box) for t in candidates]
            if ious and max(ious) >= iou_threshold:
                target = candidates[int(np.argmax(ious))]
                free.remove(target)
                matches.append((detection, target))
    n_found, n_true = sum(map(len, detections)), sum(map(len, targets))
    texts = [(d.text, t.text) for d, t in matches if t.text]
    return DetectionMetrics(
        precision=len(matches) / n_found if n_found else math.nan,
        recall=len(matches) / n_true if n_true else math.nan,
        color_accuracy=float(np.mean([d.color == t.color for d, t in matches])) if matches else math.nan,
        material_accuracy=float(np.mean([d.material == t.material for d, t in matches])) if matches else math.nan,
        text_exact_match=float(np.mean([read == true for read, true in texts])) if texts else math.nan,
        text_character_error=(
            sum(edit_distance(read, true) for read, true in texts) / sum(len(true) for _, true in texts)
            if texts
            else math.nan
        ),
        detections=n_found,
        targets=n_true,
        matches=len(matches),
    )


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two half-open pixel boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions that turn a into b."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ca != cb))
    return row[-1]


@dataclass(frozen=True)
class _Encoded:
    """One image's targets as arrays: float boxes (n, 4), label indices (n, 3), texts as alphabet indices + 1."""

    boxes: np.ndarray
    labels: np.ndarray
    texts: list[list[int]]


def _encode_targets(targets: Sequence[LabelledBox], config: DetectorConfig) -> _Encoded:
    vocabularies = (config.categories, config.colors, config.materials)
    return _Encoded(
        boxes=np.array([t.box for t in targets], dtype=np.float32).reshape(-1, 4),
        labels=np.array(
            [
                [v.index(x) for v, x in zip(vocabularies, (t.category, t.color, t.material), strict=True)]
                for t in targets
            ],
            dtype=np.int64,
        ).reshape(-1, 3),
        texts=[[config.alphabet.index(ch) + 1 for ch in t.text] for t in targets],
    )


def _loss(
    model: LandmarkDetector,
    images: torch.Tensor,
    targets: list[_Encoded],
    training: TrainConfig,
    rng: np.random.Generator,
) -> torch.Tensor:
    """Focal loss on the centre heatmap, L1 on box offset and log size and cross-entropy on attributes at the
    centre cells, and CTC of the reader on jittered true boxes of texts."""
    out = model(images)
    rows, cols = out["heatmap"].shape[1:]
    heatmap = torch.from_numpy(np.stack([_centre_heatmap(t.boxes, rows, cols) for t in targets]))
    image_index = torch.from_numpy(np.concatenate([np.full(len(t.boxes), i) for i, t in enumerate(targets)]))
    boxes = torch.from_numpy(np.concatenate([t.boxes for t in targets]))
    labels = torch.from_numpy(np.concatenate([t.labels for t in targets]))
    centre = torch.stack([boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]], 1) / (2 * STRIDE)
    cell = centre.floor().long()
    cell[:, 0].clamp_(0, cols - 1)
    cell[:, 1].clamp_(0, rows - 1)

    p = torch.sigmoid(out["heatmap"]).clamp(1e-4, 1 - 1e-4)
    positive = heatmap == 1
    focal = -(torch.where(positive, (1 - p) ** 2 * p.log(), (1 - heatmap) ** 4 * p**2 * (1 - p).log())).sum()
    loss = focal / max(int(positive.sum()), 1)
    if len(boxes):
        at = (image_index, slice(None), cell[:, 1], cell[:, 0])
        size = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1)
        box_target = torch.cat([centre - cell, size.log()], 1)
        loss = loss + F.l1_loss(out["box"][at], box_target)
        for k, name in enumerate(("category", "color", "material")):
            loss = loss + F.cross_entropy(out[name][at], labels[:, k])
    texts = [(i, box, text) for i, t in enumerate(targets) for box, text in zip(t.boxes, t.texts, strict=True) if text]
    texts *= training.crops_per_text
    if texts:
        index = torch.tensor([i for i, _, _ in texts])
        true = np.array([box for _, box, _ in texts])
        size = true[:, 2:] - true[:, :2]
        jittered = true + rng.uniform(-training.box_jitter, training.box_jitter, true.shape) * np.tile(size, 2)
        logits = model.read(images, index, torch.from_numpy(jittered.astype(np.float32)))
        spelled = [text for _, _, text in texts]
        loss = loss + F.ctc_loss(
            logits.log_softmax(2),
            torch.tensor([ch for text in spelled for ch in text]),
            torch.full((len(texts),), logits.shape[0]),
            torch.tensor([len(text) for text in spelled]),
            zero_infinity=True,
        )
    return loss


def _centre_heatmap(boxes: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows, cols): an elliptic Gaussian per box, 1 at its centre cell, spread with its size (CenterNet)."""
    heatmap = np.zeros((rows, cols), dtype=np.float32)
    ys, xs = np.arange(rows)[:, None], np.arange(cols)[None, :]
    for x0, y0, x1, y1 in boxes:
        cx = min(int((x0 + x1) / (2 * STRIDE)), cols - 1)
        cy = min(int((y0 + y1) / (2 * STRIDE)), rows - 1)
        sx, sy = max((x1 - x0) / (6 * STRIDE), 0.5), max((y1 - y0) / (6 * STRIDE), 0.5)
        gaussian = np.exp(-((xs - cx) ** 2) / (2 * sx**2) - (ys - cy) ** 2 / (2 * sy**2))
        np.maximum(heatmap, gaussian, out=heatmap)
    return heatmap


def _crops(
    images: torch.Tensor, image_index: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], margin: float
) -> torch.Tensor:
    """Crops (n, 3, *size) of boxes (n, 4) in pixel-edge coordinates, each widened by `margin` of its size."""
    height, width = images.shape[2:]
    extent = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1) * (1 + 2 * margin)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    scale = extent / torch.tensor([width, height])
    shift = 2 * centre / torch.tensor([width, height]) - 1
    theta = torch.zeros(len(boxes), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale[:, 0], scale[:, 1]
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, [len(boxes), 3, *size], align_corners=False)
    return F.grid_sample(images[image_index], grid, align_corners=False)


def _ctc_decode(logits: torch.Tensor, alphabet: str) -> list[str]:
    """Greedy CTC: the best class per step, repeats merged, blanks dropped."""
    best = logits.argmax(2).T.tolist()
    return ["".join(alphabet[c - 1] for k, c in enumerate(seq) if c and (k == 0 or c != seq[k - 1])) for seq in best]


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
