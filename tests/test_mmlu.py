import csv

import pytest

from lume.errors import InputError
from lume.evaluation.mmlu import (evaluate_mmlu, few_shot_prefix, format_question, load_mmlu,
                                  prompt_ids, summarise_mmlu)


def write_subject(folder, subject, dev_rows, test_rows):
    for part, rows in (("dev", dev_rows), ("test", test_rows)):
        (folder / part).mkdir(parents=True, exist_ok=True)
        with (folder / part / f"{subject}_{part}.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows(rows)


def make_mmlu(folder, long_dev=False):
    filler = " ".join(["word"] * 450) if long_dev else "short"
    dev = [[f"Dev question {i} {filler}?", "w", "x", "y", "z", "ABCD"[i % 4]] for i in range(5)]
    write_subject(folder, "college_physics", dev,
                  [[f"Test question {i}, about \"quotes\", commas?", f"a{i}", "b", "c", "d", "ABCD"[i % 4]]
                   for i in range(7)])
    write_subject(folder, "world_religions", dev,
                  [[f"Which one {i}?", "one", "two", "three", "four", "B"] for i in range(5)])
    return folder


def test_prompt_follows_the_protocol_format():
    from lume.evaluation.mmlu import Question

    question = Question("high_school_us_history", 0, "Q?", ("w", "x", "y", "z"), "C")
    assert format_question(question, True) == "Q?\nA. w\nB. x\nC. y\nD. z\nAnswer: C\n\n"
    assert format_question(question, False) == "Q?\nA. w\nB. x\nC. y\nD. z\nAnswer:"
    assert few_shot_prefix("high_school_us_history", [question], 1) == (
        "The following are multiple choice questions (with answers) about high school us history.\n\n"
        "Q?\nA. w\nB. x\nC. y\nD. z\nAnswer: C\n\n")


@pytest.mark.parametrize("long_dev", [False, True])
def test_prefix_reuse_gives_the_reference_predictions(tmp_path, tiny_model, tokenizer, long_dev):
    subjects = load_mmlu(make_mmlu(tmp_path, long_dev))
    reused = evaluate_mmlu(tiny_model, tokenizer, subjects, batch_size=3)
    reference = evaluate_mmlu(tiny_model, tokenizer, subjects, reuse_prefix=False)
    reference_by_id = {r["id"]: r for r in reference}
    assert sorted(reference_by_id) == sorted(r["id"] for r in reused)
    for row in reused:
        assert row["prediction"] == reference_by_id[row["id"]]["prediction"]
        assert row["letter_logits"] == pytest.approx(reference_by_id[row["id"]]["letter_logits"], abs=1e-4)
    assert len({tuple(r["letter_logits"]) for r in reused}) == len(reused)  # prompts really differ
    summary = summarise_mmlu(reused)
    assert summary["questions"] == 12
    assert summary["accuracy"] == pytest.approx(sum(r["correct"] for r in reused) / 12)
    assert set(summary["per_category"]) == {"STEM", "humanities"}


def test_shots_are_dropped_while_the_prompt_is_over_2048_tokens(tmp_path, tokenizer):
    dev, questions = load_mmlu(make_mmlu(tmp_path, long_dev=True))["college_physics"]
    shots, ids = prompt_ids(tokenizer, "college_physics", dev, questions[0], 5)
    assert 0 < shots < 5 and len(ids) <= 2048
    longer = few_shot_prefix("college_physics", dev, shots + 1) + format_question(questions[0], False)
    assert len(tokenizer(longer).input_ids) > 2048


def test_limit_samples_per_subject_with_a_seed(tmp_path):
    folder = make_mmlu(tmp_path)
    first = load_mmlu(folder, limit=3, seed=1)
    assert [len(q) for _, q in first.values()] == [3, 3]
    assert first == load_mmlu(folder, limit=3, seed=1)
    assert first != load_mmlu(folder, limit=3, seed=2)


def test_bad_mmlu_row_is_located(tmp_path):
    folder = make_mmlu(tmp_path)
    with (folder / "test" / "college_physics_test.csv").open("a") as handle:
        handle.write("Q?,a,b,c,d,E\n")
    with pytest.raises(InputError, match=r"college_physics_test.csv:8: expected 6 columns"):
        load_mmlu(folder)
