"""MMLU k-shot accuracy (the open-instruct reference's prompts), each subject's few-shot prefix run once.

Every question of a subject starts with the same header and dev examples. Their KV cache is
computed once per subject and reused for all its questions, so only the question itself is
run through the model. The prompt is still tokenised whole, as the reference does, and only
the token prefix that all questions share is reused, so the logits are those of the full prompt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from lume.results import MmluResult
from lume.data.mmlu import CATEGORY_OF, LETTERS, Question
from lume.inference.next_token import chosen_logits_shared_prefix, chosen_logits_whole
from lume.metrics.aggregate import means_by

MAX_PROMPT_TOKENS = 2048
PROMPT_FORMAT = 2  # bumped whenever the prompt text changes, so cached answers are not reused


def format_question(question: Question, with_answer: bool) -> str:
    text = question.text + "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, question.choices))
    text += "\nAnswer:"
    return text + f" {question.answer}\n\n" if with_answer else text


def format_subject(subject: str) -> str:
    """The reference's form: every `_`-separated word with a space before it (hence two spaces
    after "about" in the header)."""
    return "".join(" " + word for word in subject.split("_"))


def few_shot_prefix(subject: str, dev: list[Question], shots: int) -> str:
    header = f"The following are multiple choice questions (with answers) about {format_subject(subject)}.\n\n"
    return header + "".join(format_question(example, True) for example in dev[:shots])


def subject_prompts(tokenizer, subject: str, dev: list[Question], questions: list[Question], shots: int
                    ) -> list[tuple[int, str]]:
    """(shots kept, prompt text) per question: shots are dropped while the prompt is over 2048
    tokens, counted without special tokens as the reference does."""
    texts = [few_shot_prefix(subject, dev, shots) + format_question(q, False) for q in questions]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False).input_ids] if texts else []
    prompts = []
    for question, text, length in zip(questions, texts, lengths):
        kept = shots
        while kept > 0 and length > MAX_PROMPT_TOKENS:
            kept -= 1
            text = few_shot_prefix(subject, dev, kept) + format_question(question, False)
            length = len(tokenizer(text, add_special_tokens=False).input_ids)
        prompts.append((kept, text))
    return prompts


def letter_token_ids(tokenizer) -> list[int]:
    """The token of " A", " B", " C", " D" (the last one, should a letter take two)."""
    return [tokenizer(f" {letter}", add_special_tokens=False).input_ids[-1] for letter in LETTERS]


def _result_row(question: Question, prompt: str, shots: int, logits: list[float]) -> dict:
    prediction = LETTERS[max(range(4), key=logits.__getitem__)]
    return {"id": question.id, "subject": question.subject, "category": CATEGORY_OF.get(question.subject, "other"),
            "answer": question.answer, "prediction": prediction, "correct": prediction == question.answer,
            "letter_logits": logits, "shots": shots,
            "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest()}


def evaluate_mmlu(model, tokenizer, subjects: dict[str, tuple[list[Question], list[Question]]], *,
                  shots: int = 5, batch_size: int = 8, reuse_prefix: bool = True,
                  done: Callable[[str], dict | None] = lambda _id: None,
                  on_result: Callable[[dict], None] = lambda _row: None) -> list[dict]:
    """One row per test question: id, subject, category, answer, prediction, correct, letter_logits,
    shots (dev examples kept) and prompt_sha256 (of the exact prompt text, to check against the reference).

    `done(id)` returns a cached row to skip a question; `on_result` sees each new row.
    `reuse_prefix=False` runs each prompt whole, one at a time (the reference way).
    """
    letters = letter_token_ids(tokenizer)
    rows = []
    for subject, (dev, questions) in subjects.items():
        cached = {q.id: done(q.id) for q in questions}
        todo = [q for q in questions if cached[q.id] is None]
        rows += [row for row in cached.values() if row is not None]
        by_shots: dict[int, list[tuple[Question, str]]] = {}
        for question, (used, text) in zip(todo, subject_prompts(tokenizer, subject, dev, todo, shots)):
            by_shots.setdefault(used, []).append((question, text))
        for used, group in by_shots.items():
            ids = [tokenizer(text).input_ids for _, text in group]  # scored with special tokens, as the reference
            if reuse_prefix:
                letter_logits = chosen_logits_shared_prefix(model, ids, letters, batch_size)
            else:
                letter_logits = [chosen_logits_whole(model, row, letters) for row in ids]
            for (question, text), logits in zip(group, letter_logits):
                row = _result_row(question, text, used, logits)
                on_result(row)
                rows.append(row)
    return rows


def summarise_mmlu(rows: list[dict]) -> MmluResult:
    """Micro-averaged accuracy, plus per subject and per category."""
    def by(field: str) -> dict:
        return means_by(rows, lambda row: row[field], lambda row: row["correct"])

    return MmluResult(accuracy=sum(r["correct"] for r in rows) / len(rows), questions=len(rows),
                      per_subject=by("subject"), per_category=by("category"))
