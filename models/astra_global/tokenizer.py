"""Astra-Global's tokenizer, trained here with `tokenizers` on the words of the maps and instructions it will read.

Byte-pair encoding over lower-cased words (split at spaces by Metaspace, so decoding gives the spaces back), with
every token of the prompt and answer grammars (prompts.PROMPT_TOKENS, AnswerGrammar.tokens) as a special token: a
landmark id, a pose bin or an image pad is always one token and never merges with text. It is wrapped as a
transformers PreTrainedTokenizerFast, so it saves and loads with the model's checkpoint folder.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from models.astra_global.answers import END, AnswerGrammar
from models.astra_global.prompts import BOS, PROMPT_TOKENS

PAD, UNK = "<pad>", "<unk>"


def train_tokenizer(texts: Iterable[str], grammar: AnswerGrammar, vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A tokenizer for prompts over these texts (landmark descriptions, instructions) and the grammar's answers.

    vocab_size is how many text tokens it learns at most, beside the special ones; a small corpus stops short of it.
    """
    specials = list(dict.fromkeys([PAD, UNK, END, *PROMPT_TOKENS, *grammar.tokens()]))
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    # Digits one by one and punctuation apart, so that sign texts such as "aisle 12" share their pieces.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=len(specials) + vocab_size, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=END, pad_token=PAD, unk_token=UNK, padding_side="left"
    )
