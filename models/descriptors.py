"""Global image descriptors of map nodes, for place recognition: the plugin base and a baseline.

A descriptor maps an RGB picture to one fixed-length, L2-normalised float32 vector, so that the cosine
similarity of two pictures is a dot product and higher means likelier the same place. Map building
picks one by name from `DESCRIPTORS`.

`TinyImageDescriptor` is a placeholder baseline, deterministic and untrained (Torralba's "tiny images"
with their gradients). `VprDescriptor` serves the learned VPR model of models/vpr.py.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


class GlobalDescriptor(abc.ABC):
    """RGB images -> unit vectors of `dim` float32; subclasses register in DESCRIPTORS."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Length of every descriptor."""

    @abc.abstractmethod
    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(len(images), dim) float32 unit rows, one per RGB (H, W, 3) uint8 image."""


class TinyImageDescriptor(GlobalDescriptor):
    """The picture shrunk to `width` x `height` grey pixels, contrast-normalised, with its x and y gradients.

    The three parts are normalised each on its own before the whole, so the layout of edges weighs as
    much as the layout of brightness. A featureless (uniform) picture gives the zero vector.
    """

    def __init__(self, width: int = 16, height: int = 12) -> None:
        self.size = (width, height)

    @property
    def dim(self) -> int:
        return 3 * self.size[0] * self.size[1]

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([self._describe(image) for image in images], np.float32).reshape(len(images), self.dim)

    def _describe(self, image: np.ndarray) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
        # Box filtering averages every source pixel into its cell, so small shifts change the result smoothly.
        grey = np.asarray(Image.fromarray(image).convert("L").resize(self.size, Image.Resampling.BOX), np.float64)
        grey -= grey.mean()
        parts = [grey, *np.gradient(grey)]
        return _unit(np.concatenate([_unit(part.ravel()) for part in parts]))


class VprDescriptor(GlobalDescriptor):
    """The learned VPR model (models/vpr.py) of a checkpoint folder, by default the committed one."""

    DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "vpr"

    def __init__(self, checkpoint: str | Path = DEFAULT_WEIGHTS, batch_size: int = 64, model: Any = None) -> None:
        """The checkpoint's model, or `model` (a VprModel in memory, as training scores it before saving)."""
        self.batch_size = batch_size
        if model is not None:
            self.model = model
            return
        # torch loads only when a VPR descriptor is asked for: the tiny-image users never pay for it.
        from models.vpr import VprModel

        checkpoint = Path(checkpoint)
        if not (checkpoint / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"no VPR checkpoint at {checkpoint} (config.json + model.safetensors): train one with "
                "models.vpr.train_vpr(...).save(dir) and pass its folder, or commit the default to models/weights/vpr"
            )
        self.model = VprModel.from_pretrained(checkpoint, strict=True)

    @property
    def dim(self) -> int:
        return self.model.dim

    def describe(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.describe(images, self.batch_size)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


DESCRIPTORS: dict[str, type[GlobalDescriptor]] = {"tiny_image": TinyImageDescriptor, "vpr": VprDescriptor}
