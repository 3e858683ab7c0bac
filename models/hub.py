"""The base of every checkpointed model: huggingface_hub's PyTorch mixin (config.json, model.safetensors and a model
card per folder), loading without a word on stdout, which the `--json` commands keep for their one JSON line."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from huggingface_hub import PyTorchModelHubMixin


class HubModel(PyTorchModelHubMixin):
    @classmethod
    def _from_pretrained(cls, **kwargs: Any) -> Any:
        with contextlib.redirect_stdout(io.StringIO()):  # huggingface_hub prints "Loading weights ..." on stdout
            return super()._from_pretrained(**kwargs)
