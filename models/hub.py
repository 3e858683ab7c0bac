"""The base of every checkpointed model: huggingface_hub's PyTorch mixin (config.json, model.safetensors and a model
card per folder), loading without a word on stdout, which the `--json` commands keep for their one JSON line."""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path
from typing import Any

from huggingface_hub import PyTorchModelHubMixin


class HubModel(PyTorchModelHubMixin):
    @classmethod
    def _from_pretrained(cls, **kwargs: Any) -> Any:
        with contextlib.redirect_stdout(io.StringIO()):  # huggingface_hub prints "Loading weights ..." on stdout
            return super()._from_pretrained(**kwargs)


def checkpoint_digest(checkpoint: Path) -> str:
    """A short hash of a checkpoint folder's files, so that what was made with it can name it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(checkpoint).iterdir() if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
