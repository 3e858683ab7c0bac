"""The Astra-Global model: transformers' Qwen2-VL built small from a config, with its tokenizer, image processor and
answer grammar, saved and loaded as one checkpoint folder.

Qwen2-VL is the paper's model family (Qwen2.5-VL differs in its vision blocks, not in what this needs): a ViT cuts
each image into patches, merges 2x2 neighbours into one token and splices those over the prompt's image pads; the
decoder reads them with the text, with multimodal rotary positions (time, row, column). The class is used as the
library ships it. Qwen2VLProcessor is not: it needs torchvision for its video half, which this venv lacks, so
`AstraGlobal.inputs` assembles the same inputs (prompt text with pads, pixel patches from the library's PIL image
processor, `mm_token_type_ids`) itself.

Measured on the shared 2-core machine at the default size (4.65 M parameters, 0.95 M of them vision), one SFT step
of 8 queries ran at 4,400 tokens/s (313-token prompts, two threads, light load) down to 1,100 tokens/s (3 pictures at
160x120, a 40-landmark 30-node map: 397 tokens; one thread, load 6-7, where two threads took ten times longer). A
text-only Qwen2 decoder of the same size trained no faster, so the library's vision tower and M-RoPE cost nothing that
would favour splicing a hand-written ViT into a plain decoder.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from models.astra_global.answers import END, Answer, AnswerGrammar
from models.astra_global.prompts import IMAGE_END, IMAGE_PAD, IMAGE_START, VIDEO_PAD, Query, prompt_text

GRAMMAR_FILE = "grammar.json"
_WEIGHTS = Path(__file__).parents[1] / "weights"
# The committed checkpoints (`astra train global --models astra`): after SFT, and after SFT then GRPO.
COMMITTED_CHECKPOINTS = {"sft": _WEIGHTS / "astra_global_sft", "grpo": _WEIGHTS / "astra_global"}
IGNORE = -100  # the label of tokens that are not scored (transformers' convention)


@dataclass(frozen=True)
class ModelSize:
    """How big the transformer is; the defaults give 4.5 M parameters."""

    hidden_size: int = 256
    layers: int = 6
    heads: int = 4
    kv_heads: int = 2
    vision_size: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    patch_size: int = 8
    merge_size: int = 2
    # Larger pictures are shrunk to this area: 160x120 becomes 80x48, 15 tokens after merging.
    max_image_pixels: int = 80 * 64
    max_positions: int = 4096


def qwen2_vl_config(tokenizer: PreTrainedTokenizerFast, size: ModelSize) -> Qwen2VLConfig:
    """A Qwen2-VL config of this size over this tokenizer's vocabulary and vision tokens."""
    half = size.hidden_size // size.heads // 2
    # M-RoPE splits each head's rotary frequencies over time, row and column as Qwen2-VL does (1/4, 3/8, 3/8).
    time_part = half // 4
    mrope = [time_part, (half - time_part) // 2, half - time_part - (half - time_part) // 2]
    token_id = tokenizer.convert_tokens_to_ids
    return Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": size.hidden_size,
            "intermediate_size": 2 * size.hidden_size,
            "num_hidden_layers": size.layers,
            "num_attention_heads": size.heads,
            "num_key_value_heads": size.kv_heads,
            "max_position_embeddings": size.max_positions,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": size.vision_layers,
            "embed_dim": size.vision_size,
            "hidden_size": size.hidden_size,
            "num_heads": size.vision_heads,
            "mlp_ratio": 2,
            "patch_size": size.patch_size,
            "temporal_patch_size": 1,  # still pictures: a temporal patch of 2 would only duplicate each one
            "spatial_merge_size": size.merge_size,
        },
        image_token_id=token_id(IMAGE_PAD),
        video_token_id=token_id(VIDEO_PAD),
        vision_start_token_id=token_id(IMAGE_START),
        vision_end_token_id=token_id(IMAGE_END),
        tie_word_embeddings=True,
    )


class AstraGlobal:
    """Queries in, answers out: the Qwen2-VL model with everything needed to feed it and read it."""

    def __init__(
        self,
        model: Qwen2VLForConditionalGeneration,
        tokenizer: PreTrainedTokenizerFast,
        image_processor: Qwen2VLImageProcessorPil,
        grammar: AnswerGrammar,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.grammar = grammar

    @classmethod
    def create(
        cls, tokenizer: PreTrainedTokenizerFast, grammar: AnswerGrammar, size: ModelSize = ModelSize()
    ) -> AstraGlobal:
        """A freshly initialised model (seed torch first for a reproducible one)."""
        model = Qwen2VLForConditionalGeneration(qwen2_vl_config(tokenizer, size))
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            setattr(model.generation_config, key, getattr(tokenizer, key))
        image_processor = Qwen2VLImageProcessorPil(
            patch_size=size.patch_size,
            temporal_patch_size=1,
            merge_size=size.merge_size,
            min_pixels=(size.patch_size * size.merge_size) ** 2,
            max_pixels=size.max_image_pixels,
        )
        return cls(model, tokenizer, image_processor, grammar)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @functools.cached_property
    def unsayable(self) -> list[int]:
        """The token ids no answer holds (words, prompt marks, image pads): generation never writes them, and
        answer_logits rules them out, so sampled answers are scored under the distribution they came from."""
        sayable = set(self.tokenizer.convert_tokens_to_ids([*self.grammar.tokens(), END]))
        return [i for i in range(len(self.tokenizer)) if i not in sayable]

    def answer_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits with the unsayable tokens at -inf."""
        return logits.index_fill(-1, torch.tensor(self.unsayable, device=logits.device), float("-inf"))

    def inputs(self, queries: Sequence[Query], completions: Sequence[Sequence[int]] | None = None) -> dict:
        """The model's keyword inputs for these queries, left-padded; with completions (token ids) appended to the
        prompts, `labels` holds them and IGNORE elsewhere, for teacher forcing and for scoring sampled answers."""
        for query in queries:
            if len(query.landmarks) > self.grammar.max_landmarks or len(query.nodes) > self.grammar.max_nodes:
                raise ValueError(
                    f"a query lists {len(query.landmarks)} landmarks and {len(query.nodes)} nodes; the grammar holds "
                    f"{self.grammar.max_landmarks} and {self.grammar.max_nodes}: give it a candidate subset"
                )
        images = [image for query in queries for image in query.all_images]
        vision = self.image_processor(images=images, return_tensors="pt") if images else {}
        pads = (vision["image_grid_thw"].prod(-1) // self.image_processor.merge_size**2).tolist() if images else []
        prompts, start = [], 0
        for query in queries:
            prompts.append(prompt_text(query, pads[start : start + len(query.all_images)]))
            start += len(query.all_images)
        prompt_ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        tails = [list(c) for c in completions] if completions is not None else [[] for _ in queries]
        width = max(len(p) + len(c) for p, c in zip(prompt_ids, tails, strict=True))
        input_ids = torch.full((len(queries), width), self.tokenizer.pad_token_id)
        attention_mask = torch.zeros((len(queries), width), dtype=torch.long)
        labels = torch.full((len(queries), width), IGNORE)
        for row, (prompt, tail) in enumerate(zip(prompt_ids, tails, strict=True)):
            sequence = prompt + tail
            input_ids[row, width - len(sequence) :] = torch.tensor(sequence)
            attention_mask[row, width - len(sequence) :] = 1
            if tail:
                labels[row, width - len(tail) :] = torch.tensor(tail)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mm_token_type_ids": (input_ids == self.model.config.image_token_id).int(),
            **vision,
        }
        if completions is not None:
            batch["labels"] = labels
        return {key: value.to(self.device) for key, value in batch.items()}

    def generation_settings(self, temperature: float | None = None) -> dict:
        """generate()'s keyword arguments to transformers' generate: greedy, or sampling at `temperature` from the
        whole softmax over the answer vocabulary (top-k and nucleus off: transformers would default to top-50)."""
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        return {"suppress_tokens": self.unsayable, **(sampling if temperature is not None else {"do_sample": False})}

    @torch.no_grad()
    def generate(
        self, queries: Sequence[Query], max_new_tokens: int = 64, temperature: float | None = None
    ) -> list[list[int]]:
        """One answer per query as token ids, up to and including END (all of them if END never came): greedy, or
        sampled at `temperature` (generation_settings; seed torch for reproducible samples)."""
        inputs = self.inputs(queries)
        training = self.model.training
        self.model.eval()
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, **self.generation_settings(temperature))
        self.model.train(training)
        end = self.tokenizer.eos_token_id
        completions = []
        for row in out[:, inputs["input_ids"].shape[1] :].tolist():
            completions.append(row[: row.index(end) + 1] if end in row else row)
        return completions

    def parse(self, completion: Sequence[int]) -> Answer | None:
        """The answer these token ids spell, or None if malformed."""
        return self.grammar.parse(self.tokenizer.convert_ids_to_tokens(list(completion)))

    def answer_ids(self, answer: Answer | str) -> list[int]:
        """The token ids of an answer (its teacher-forcing target): a localization answer in the grammar's tokens, or
        a text goal's place in words, each followed by END."""
        if isinstance(answer, str):
            return [*self.tokenizer(answer, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]
        return self.tokenizer.convert_tokens_to_ids(self.grammar.encode(answer))

    def answer(self, queries: Sequence[Query], max_new_tokens: int = 64) -> list[Answer | None]:
        """The greedy answer to each query, parsed (None where malformed)."""
        return [self.parse(completion) for completion in self.generate(queries, max_new_tokens)]

    def save_pretrained(self, folder: Path | str) -> None:
        """Model (bfloat16 weights), tokenizer, image processor and grammar into one folder (the transformers layout
        plus grammar.json)."""
        folder = Path(folder)
        # Weights in bfloat16, half the bytes of the committed defaults; from_pretrained trains and runs in float32.
        half = {name: value.to(torch.bfloat16) for name, value in self.model.state_dict().items()}
        self.model.save_pretrained(folder, state_dict=half)
        self.tokenizer.save_pretrained(folder)
        self.image_processor.save_pretrained(folder)
        (folder / GRAMMAR_FILE).write_text(json.dumps(asdict(self.grammar), indent=1))

    @classmethod
    def from_pretrained(cls, folder: Path | str) -> AstraGlobal:
        """The model saved in a local folder; nothing is downloaded."""
        folder = Path(folder)
        if not (folder / GRAMMAR_FILE).is_file():
            raise FileNotFoundError(f"{folder} holds no Astra-Global checkpoint: it has no {GRAMMAR_FILE}")
        return cls(
            Qwen2VLForConditionalGeneration.from_pretrained(folder, local_files_only=True, dtype=torch.float32),
            PreTrainedTokenizerFast.from_pretrained(folder, local_files_only=True),
            Qwen2VLImageProcessorPil.from_pretrained(folder, local_files_only=True),
            AnswerGrammar(**json.loads((folder / GRAMMAR_FILE).read_text())),
        )
