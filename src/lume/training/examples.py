"""Training sequences: a prompt, an answer, and which tokens carry the loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lume.inference.batching import IGNORE, right_padded


@dataclass
class Example:
    """One training sequence: token ids and their labels (IGNORE where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]
    prompt: str = ""  # the text before the answer, for methods that swap answers (IdkDPO, AltPO)
    record: object = None  # the data row it was made from (unlearning: its id, task, answer)


def prompt_answer_example(tokenizer, prompt: str, answer: str, prompt_loss: bool = False) -> Example:
    """`prompt` then ` answer` then EOS, tokenised as generation will see the prompt.

    The prompt is tokenised alone (as at evaluation time) and the answer after it with a
    leading space; the loss covers the answer and EOS (and the prompt when `prompt_loss`).
    """
    prompt_ids = tokenizer(prompt).input_ids
    answer_ids = tokenizer(" " + answer.lstrip(), add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    prompt_labels = list(prompt_ids) if prompt_loss else [IGNORE] * len(prompt_ids)
    return Example(prompt_ids + answer_ids, prompt_labels + answer_ids, prompt)


def collate(examples: list[Example], pad_id: int, device=None) -> dict[str, torch.Tensor]:
    """Right-padded batch with attention mask; padding carries no loss."""
    return right_padded([e.input_ids for e in examples], pad_id, device, labels=[e.labels for e in examples])
