"""Global image descriptors of map nodes, for place recognition: the plugin base and a baseline.

A descriptor maps an RGB picture to one fixed-length, L2-normalised float32 vector, so that the cosine
similarity of two pictures is a dot product and higher means likelier the same place. Map building
picks one by name from `DESCRIPTORS`.

`TinyImageDescriptor` is a placeholder baseline, deterministic and untrained (Torralba's "tiny images"
with their gradients); learned VPR models will replace it behind the same interface.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

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


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


DESCRIPTORS: dict[str, type[GlobalDescriptor]] = {"tiny_image": TinyImageDescriptor}
