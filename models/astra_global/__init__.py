"""Astra-Global: a small vision-language transformer (transformers' Qwen2-VL, built from a config) that reads a
query's camera images and the map's landmark list and answers with landmark ids, node ids and a pose, or turns an
instruction into goal landmarks and nodes; trained from scratch by SFT, then GRPO with rule rewards.

    answers.py    the answer grammar and its parser          prompts.py   the query and its prompt
    tokenizer.py  the tokenizer, trained with `tokenizers`   model.py     the model, its inputs, save and load
    rewards.py    the rule rewards                           sft.py       supervised fine-tuning
    grpo.py       group relative policy optimisation
"""
