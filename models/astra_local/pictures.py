"""The cameras as Astra-Local's models read them, the same in the training set and on the robot.

Each camera's picture and depth shrink to the stored size (schemas.local_dataset.LocalGeometry) by keeping every s-th
pixel, s the recorded width over the stored one, so both share one camera matrix; the picture is kept as JPEG.
`pipelines.local_dataset` stores them so, `datasets.encoder_sequences` decodes them into the 4D encoder's batch, and
`models.astra_local.serving` shrinks the live cameras the same way for a planner that reads the encoder's tokens.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from schemas.local_dataset import LocalGeometry
from schemas.messages import CameraInfo

JPEG_QUALITY = 90


@dataclass(frozen=True)
class ShrunkCamera:
    """One camera at one instant, at the stored size."""

    jpeg: bytes  # RGB
    depth: np.ndarray  # float16 [H, W] m along the optical axis, NaN where invalid
    k: tuple[float, ...]  # 3x3 row-major intrinsics


def shrink_camera(jpeg: bytes, metres: np.ndarray, info: CameraInfo, geometry: LocalGeometry) -> ShrunkCamera:
    """The recorded picture (JPEG) and depth [height, width] of the camera `info` describes, at the stored size.
    Raises ValueError where the recording does not shrink to it by a whole factor."""
    scale = info.width // geometry.image_width
    if scale < 1 or info.width != scale * geometry.image_width or info.height != scale * geometry.image_height:
        raise ValueError(
            f"recorded pictures of {info.width}x{info.height} do not shrink to the stored "
            f"{geometry.image_width}x{geometry.image_height} by a whole factor"
        )
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))[::scale, ::scale]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    fx, _, cx, _, fy, cy, *_ = info.k  # pixel centres at integers: stored pixel u is recorded pixel s * u
    return ShrunkCamera(
        buffer.getvalue(),
        np.ascontiguousarray(metres[::scale, ::scale], dtype="<f2"),
        (fx / scale, 0.0, cx / scale, 0.0, fy / scale, cy / scale, 0.0, 0.0, 1.0),
    )


def picture_array(jpeg: bytes) -> np.ndarray:
    """uint8 [3, H, W] RGB of a JPEG."""
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).transpose(2, 0, 1)


def encoder_frames(rgb: np.ndarray, depth: np.ndarray, k: np.ndarray, odom_poses: np.ndarray) -> dict[str, np.ndarray]:
    """The 4D encoder's inputs (models.astra_local.encoder4d's contract, one window, no batch dimension) from T frames
    of the cameras: rgb uint8 [T, cams, 3, H, W], depth float16 [T, cams, H, W] with NaN where invalid, the current
    frame's k [cams, 3, 3], and each frame's filter pose (x, y, yaw) in the current frame's ego [T, 3]."""
    depth = depth.astype(np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    return {
        "rgb": rgb.astype(np.float32) / 255,
        "depth": np.where(valid, depth, 0.0).astype(np.float32),
        "depth_valid": valid,
        "k": np.asarray(k, np.float32),
        "odom_poses": np.asarray(odom_poses, np.float32),
    }


def as_batch(fields: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A batch of one of `encoder_frames`' fields."""
    return {name: torch.from_numpy(value)[None] for name, value in fields.items()}
