"""MMLU questions in the Hendrycks layout (`dev/` and `test/` CSVs per subject), read as the
reference reads them, with Hendrycks et al.'s subject categories."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from lume.errors import InputError, LumeError

LETTERS = ("A", "B", "C", "D")
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


def load_mmlu(folder: str | Path, limit: int | None = None, seed: int = 0, subject_count: int | None = None
              ) -> dict[str, tuple[list[Question], list[Question]]]:
    """{subject: (dev examples, test questions)}; `limit` samples test questions per subject,
    `subject_count` samples that many subjects (seeded; None = every subject)."""
    folder = Path(folder)
    tests = sorted((folder / "test").glob("*_test.csv"))
    if not tests:
        raise LumeError(f"{folder}: no MMLU test files (expected test/*_test.csv)")
    untested = sorted({p.name[:-len("_dev.csv")] for p in (folder / "dev").glob("*_dev.csv")}
                      - {p.name[:-len("_test.csv")] for p in tests})
    if untested:
        raise LumeError(f"{folder / 'test' / (untested[0] + '_test.csv')}: missing (the subject has dev questions); "
                        "restore it, or remove its dev file to leave the subject out")
    if subject_count is not None and subject_count > len(tests):
        raise LumeError(f"mmlu_subjects {subject_count}: {folder} holds {len(tests)} subjects; ask for at most that "
                        "many (or none: all of them)")
    if subject_count is not None and subject_count < len(tests):
        tests = sorted(random.Random(f"{seed}:subjects").sample(tests, subject_count))
    subjects = {}
    for test_file in tests:
        subject = test_file.name[: -len("_test.csv")]
        questions = _read_csv(test_file, subject)
        if limit is not None and limit < len(questions):
            picked = sorted(random.Random(f"{seed}:{subject}").sample(range(len(questions)), limit))
            questions = [questions[i] for i in picked]
        subjects[subject] = (_read_csv(folder / "dev" / f"{subject}_dev.csv", subject), questions)
    return subjects
