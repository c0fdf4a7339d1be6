"""MMLU k-shot (Hendrycks layout), with each subject's few-shot prefix computed once.

Every question of a subject starts with the same header and dev examples. Their KV cache is
computed once per subject and reused for all its questions, so only the question itself is
run through the model. The prompt is still tokenised whole, as the reference does, and only
the token prefix that all questions share is reused, so the logits are those of the full prompt.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

from lume.errors import InputError, LumeError

LETTERS = ("A", "B", "C", "D")
MAX_PROMPT_TOKENS = 2048
PROMPT_FORMAT = 2  # bumped whenever the prompt text changes, so cached answers are not reused
# Hendrycks et al.'s table (hendrycks/test, categories.py): subject -> subcategory -> category.
SUBCATEGORY = {
    "math": "abstract_algebra college_mathematics elementary_mathematics high_school_mathematics "
            "high_school_statistics",
    "health": "anatomy clinical_knowledge college_medicine human_aging medical_genetics nutrition "
              "professional_medicine virology",
    "physics": "astronomy college_physics conceptual_physics high_school_physics",
    "business": "business_ethics management marketing",
    "biology": "college_biology high_school_biology",
    "chemistry": "college_chemistry high_school_chemistry",
    "computer science": "college_computer_science computer_security high_school_computer_science machine_learning",
    "economics": "econometrics high_school_macroeconomics high_school_microeconomics",
    "engineering": "electrical_engineering",
    "philosophy": "formal_logic logical_fallacies moral_disputes moral_scenarios philosophy world_religions",
    "other": "global_facts miscellaneous professional_accounting",
    "history": "high_school_european_history high_school_us_history high_school_world_history prehistory",
    "geography": "high_school_geography",
    "politics": "high_school_government_and_politics public_relations security_studies us_foreign_policy",
    "psychology": "high_school_psychology professional_psychology",
    "culture": "human_sexuality sociology",
    "law": "international_law jurisprudence professional_law",
}
CATEGORIES = {
    "STEM": ("physics", "chemistry", "biology", "computer science", "math", "engineering"),
    "humanities": ("history", "philosophy", "law"),
    "social sciences": ("politics", "culture", "economics", "geography", "psychology"),
    "other (business, health, misc.)": ("other", "business", "health"),
}
CATEGORY_OF = {subject: category for category, subcategories in CATEGORIES.items() for sub in subcategories
               for subject in SUBCATEGORY[sub].split()}


@dataclass(frozen=True)
class Question:
    """One row of a subject's CSV, its cells as the reference's pandas reads them (so a cell
    holding `None` or `NA` is NaN and prints `nan`, as in the reference's prompts)."""

    subject: str
    index: int  # row in the subject's file
    text: str
    choices: tuple
    answer: str

    @property
    def id(self) -> str:
        return f"{self.subject}/{self.index}"


def _read_csv(path: Path, subject: str) -> list[Question]:
    """The rows of a headerless MMLU CSV, read with pandas' defaults as the reference does."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, header=None)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise InputError(path, f"unreadable CSV: {str(error).splitlines()[0]}") from None
    if frame.shape[1] != 6:
        raise InputError(path, f"expected 6 columns: question,A,B,C,D,answer-letter (found {frame.shape[1]})")
    questions = []
    for number, row in enumerate(frame.itertuples(index=False), start=1):
        if not isinstance(row[0], str) or row[5] not in LETTERS:
            raise InputError(path, "expected a question and an answer letter A-D", row=number)
        questions.append(Question(subject, number - 1, row[0], tuple(row[1:5]), row[5]))
    return questions


def load_mmlu(folder: str | Path, limit: int | None = None, seed: int = 0
              ) -> dict[str, tuple[list[Question], list[Question]]]:
    """{subject: (dev examples, test questions)}; `limit` samples test questions per subject."""
    folder = Path(folder)
    tests = sorted((folder / "test").glob("*_test.csv"))
    if not tests:
        raise LumeError(f"{folder}: no MMLU test files (expected test/*_test.csv)")
    subjects = {}
    for test_file in tests:
        subject = test_file.name[: -len("_test.csv")]
        questions = _read_csv(test_file, subject)
        if limit is not None and limit < len(questions):
            picked = sorted(random.Random(f"{seed}:{subject}").sample(range(len(questions)), limit))
            questions = [questions[i] for i in picked]
        subjects[subject] = (_read_csv(folder / "dev" / f"{subject}_dev.csv", subject), questions)
    return subjects


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


def _shared_length(sequences: list[list[int]]) -> int:
    first = sequences[0]
    length = min(len(s) for s in sequences) - 1  # leave at least one token to run per question
    for other in sequences[1:]:
        length = next((i for i in range(length) if other[i] != first[i]), length)
    return length


@torch.inference_mode()
def _letter_logits_with_prefix(model, ids: list[list[int]], letters: list[int], batch_size: int
                              ) -> list[list[float]]:
    """Next-token logits of the four letters for prompts sharing a token prefix, whose KV cache
    is computed once."""
    device = model.device
    shared = _shared_length(ids)
    prefix_cache = DynamicCache()
    if shared:
        model(input_ids=torch.tensor([ids[0][:shared]], device=device), cache=prefix_cache,
              use_cache=True, logits_to_keep=1)
    letter_index = torch.tensor(letters, device=device)
    scores = []
    for start in range(0, len(ids), batch_size):
        suffixes = [row[shared:] for row in ids[start:start + batch_size]]
        width = max(len(s) for s in suffixes)
        tokens = torch.tensor([s + [0] * (width - len(s)) for s in suffixes], device=device)
        mask = torch.tensor([[1] * (shared + len(s)) + [0] * (width - len(s)) for s in suffixes],
                            device=device)
        positions = torch.arange(shared, shared + width, device=device).expand(len(suffixes), -1)
        # Every row starts from the same prefix: broadcast views, copied once when the suffix is appended.
        layers = []
        for prefix_layer in prefix_cache.layers if shared else []:
            layer = DynamicLayer()
            layer.lazy_initialization(prefix_layer.keys, prefix_layer.values)
            layer.keys = prefix_layer.keys.expand(len(suffixes), -1, -1, -1)
            layer.values = prefix_layer.values.expand(len(suffixes), -1, -1, -1)
            layers.append(layer)
        cache = Cache(layers=layers) if layers else DynamicCache()
        # Only each row's last position needs logits: keep those positions, not all `width`.
        last = [len(s) - 1 for s in suffixes]
        kept = sorted(set(last))
        logits = model(input_ids=tokens, attention_mask=mask, position_ids=positions, cache=cache,
                       use_cache=True, logits_to_keep=torch.tensor(kept, device=device)).logits
        column = torch.tensor([kept.index(i) for i in last], device=device)
        scores += logits[torch.arange(len(suffixes), device=device), column][:, letter_index].float().tolist()
    return scores


@torch.inference_mode()
def _letter_logits_one(model, ids: list[int], letters: list[int]) -> list[float]:
    logits = model(input_ids=torch.tensor([ids], device=model.device), logits_to_keep=1).logits
    return logits[0, -1, letters].float().tolist()


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
                letter_logits = _letter_logits_with_prefix(model, ids, letters, batch_size)
            else:
                letter_logits = [_letter_logits_one(model, row, letters) for row in ids]
            for (question, text), logits in zip(group, letter_logits):
                row = _result_row(question, text, used, logits)
                on_result(row)
                rows.append(row)
    return rows


def summarise_mmlu(rows: list[dict]) -> dict:
    """Micro-averaged accuracy, plus per subject and per category."""
    def accuracy(selected):
        return sum(r["correct"] for r in selected) / len(selected)

    by = lambda field: {value: accuracy([r for r in rows if r[field] == value])  # noqa: E731
                        for value in sorted({r[field] for r in rows})}
    return {"accuracy": accuracy(rows), "questions": len(rows), "per_subject": by("subject"),
            "per_category": by("category")}
