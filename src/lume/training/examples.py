"""Training sequences: a prompt, an answer, and which tokens carry the loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lume.config import check_settings, setting
from lume.data.records import TASKS
from lume.errors import LumeError
from lume.inference.batching import IGNORE, right_padded


@dataclass
class Example:
    """One training sequence: token ids and their labels (IGNORE where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]
    prompt: str = ""  # the text before the answer, for methods that swap answers (IdkDPO, AltPO)
    record: object = None  # the data row it was made from (unlearning: its id, task, answer)


def _check_task_cuts(cuts) -> None:
    if set(cuts) - set(TASKS) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                                         for n in cuts.values()):
        raise LumeError(f"task_max_tokens: expected a whole number of at least 1 for any of {', '.join(TASKS)}, "
                        f"got {cuts!r}")


@dataclass
class TextSettings:
    """How a record becomes an unlearning sequence. The defaults are lume's: the prompt as
    evaluation sees it, a space, the answer and EOS; the SemEval-2025 teams differed, and their
    recipes set these to what each team's code did (docs/recipes.md)."""

    answer_space: bool = setting(True, "A space between the prompt and the answer, as the answer follows the prompt "
                                       "in the data (ZJUKLAB's script joins them without one)")
    eos: bool = setting(True, "EOS after the answer, in the loss (AILS-NTUA and Mr. Snuffleupagus put none)")
    prompt_tokens: int = setting(0, "Keep only the prompt's last N tokens (ZJUKLAB: 204, 80 % of 256); 0 = all",
                                 at_least=0)
    max_tokens: int = setting(0, "Cut each sequence after its first N tokens, prompt and answer (ZJUKLAB: 256); "
                                 "0 = no cut", at_least=0)
    task_max_tokens: dict = setting(help="Per task (Task1, Task2, Task3), a cut in place of max_tokens (Mr. "
                                         "Snuffleupagus: 256, 105, 335)", factory=dict, check=_check_task_cuts)

    def __post_init__(self):
        check_settings(self)

    def cut(self, task: str | None) -> int:
        """The sequence length a record of `task` is cut to (0: none)."""
        return self.task_max_tokens.get(task, self.max_tokens)


def prompt_answer_example(tokenizer, prompt: str, answer: str, prompt_loss: bool = False,
                          text: TextSettings | None = None, task: str | None = None) -> Example:
    """`prompt` then ` answer` then EOS, tokenised as generation will see the prompt (`text`
    changes the space, the EOS and where the sequence is cut).

    The prompt is tokenised alone (as at evaluation time) and the answer after it; the loss
    covers the answer and EOS (and the prompt when `prompt_loss`).
    """
    text = text or TextSettings()
    prompt_ids = tokenizer(prompt).input_ids[-text.prompt_tokens if text.prompt_tokens else 0:]
    answer_ids = tokenizer((" " if text.answer_space else "") + answer.lstrip(), add_special_tokens=False).input_ids
    answer_ids += [tokenizer.eos_token_id] * text.eos
    prompt_labels = list(prompt_ids) if prompt_loss else [IGNORE] * len(prompt_ids)
    cut = text.cut(task) or None
    return Example((prompt_ids + answer_ids)[:cut], (prompt_labels + answer_ids)[:cut], prompt)


def collate(examples: list[Example], pad_id: int, device=None) -> dict[str, torch.Tensor]:
    """Right-padded batch with attention mask; padding carries no loss."""
    return right_padded([e.input_ids for e in examples], pad_id, device, labels=[e.labels for e in examples])
