import csv

import pytest

from lume.errors import InputError, LumeError
from lume.data.mmlu import load_mmlu
from lume.metrics.mmlu import evaluate_mmlu, few_shot_prefix, format_question, subject_prompts, summarise_mmlu


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
    from lume.data.mmlu import Question

    question = Question("high_school_us_history", 0, "Q?", ("w", "x", "y", "z"), "C")
    assert format_question(question, True) == "Q?\nA. w\nB. x\nC. y\nD. z\nAnswer: C\n\n"
    assert format_question(question, False) == "Q?\nA. w\nB. x\nC. y\nD. z\nAnswer:"
    assert few_shot_prefix("high_school_us_history", [question], 1) == (
        "The following are multiple choice questions (with answers) about  high school us history.\n\n"
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
    assert summary.questions == 12
    assert summary.accuracy == pytest.approx(sum(r["correct"] for r in reused) / 12)
    assert set(summary.per_category) == {"STEM", "humanities"}


def test_the_output_layer_reads_one_position_per_prompt(tmp_path, tiny_model, tokenizer):
    """Batches of prompts of different lengths: the vocabulary-sized output layer runs on each
    prompt's last position only, not on every row at every row's last position."""
    dev = [[f"Dev question {i}?", "w", "x", "y", "z", "ABCD"[i % 4]] for i in range(5)]
    questions = [[f"Question {' longer' * i}?", "a", "b", "c", "d", "A"] for i in range(12)]
    write_subject(tmp_path, "anatomy", dev, questions)
    subjects = load_mmlu(tmp_path)
    reads = []
    hook = tiny_model.get_output_embeddings().register_forward_hook(
        lambda _m, inputs, _o: reads.append(inputs[0].shape[:-1].numel()))
    try:
        rows = evaluate_mmlu(tiny_model, tokenizer, subjects, batch_size=3)
    finally:
        hook.remove()
    assert len(rows) == 12 and max(reads) == 3


def test_shots_are_dropped_while_the_prompt_is_over_2048_tokens(tmp_path, tokenizer):
    dev, questions = load_mmlu(make_mmlu(tmp_path, long_dev=True))["college_physics"]
    [(shots, text)] = subject_prompts(tokenizer, "college_physics", dev, questions[:1], 5)
    assert 0 < shots < 5 and len(tokenizer(text, add_special_tokens=False).input_ids) <= 2048
    longer = few_shot_prefix("college_physics", dev, shots + 1) + format_question(questions[0], False)
    assert len(tokenizer(longer, add_special_tokens=False).input_ids) > 2048


def test_limit_samples_per_subject_with_a_seed(tmp_path):
    folder = make_mmlu(tmp_path)
    first = load_mmlu(folder, limit=3, seed=1)
    assert [len(q) for _, q in first.values()] == [3, 3]
    assert first == load_mmlu(folder, limit=3, seed=1)
    assert first != load_mmlu(folder, limit=3, seed=2)


def test_subject_count_samples_subjects_with_a_seed(tmp_path):
    folder = make_mmlu(tmp_path)
    picks = {seed: list(load_mmlu(folder, seed=seed, subject_count=1)) for seed in range(8)}
    assert all(len(p) == 1 for p in picks.values()) and len({p[0] for p in picks.values()}) == 2
    assert picks[3] == list(load_mmlu(folder, seed=3, subject_count=1))
    assert len(load_mmlu(folder, subject_count=2)) == 2
    with pytest.raises(LumeError, match="mmlu_subjects 5: .* holds 2 subjects"):
        load_mmlu(folder, subject_count=5)  # more than there are: refused, not recorded as 5


def test_more_mmlu_subjects_than_mmlu_has_are_refused_when_the_config_is_built():
    from lume.stages.evaluation import EvalConfig

    with pytest.raises(LumeError, match="mmlu_subjects must be at most 57, got 58"):
        EvalConfig(mmlu_subjects=58)


def test_bad_mmlu_row_is_located(tmp_path):
    folder = make_mmlu(tmp_path)
    with (folder / "test" / "college_physics_test.csv").open("a") as handle:
        handle.write("Q?,a,b,c,d,E\n")
    with pytest.raises(InputError, match=r"college_physics_test.csv: row 8: expected a question and an answer letter"):
        load_mmlu(folder)


def test_categories_follow_hendrycks_table():
    from lume.data.mmlu import CATEGORY_OF

    assert len(CATEGORY_OF) == 57
    assert CATEGORY_OF["anatomy"] == "other (business, health, misc.)"
    assert CATEGORY_OF["college_biology"] == "STEM" and CATEGORY_OF["world_religions"] == "humanities"
    assert CATEGORY_OF["human_sexuality"] == "social sciences"


def test_rows_record_the_prompt_hash_and_shots(tmp_path, tiny_model, tokenizer):
    import hashlib

    subjects = load_mmlu(make_mmlu(tmp_path))
    rows = evaluate_mmlu(tiny_model, tokenizer, subjects)
    dev, questions = subjects["college_physics"]
    text = few_shot_prefix("college_physics", dev, 5) + format_question(questions[0], False)
    first = next(r for r in rows if r["id"] == questions[0].id)
    assert first["shots"] == 5 and first["prompt_sha256"] == hashlib.sha256(text.encode()).hexdigest()


# The reference (open-instruct eval/mmlu/run_eval.py, which the LUME organisers ran), rebuilt
# here from its definition, independently of lume's code: pandas read_csv(header=None),
# `format_subject`, `format_example`, `gen_prompt`, and the 2048-token loop.
def reference_prompts(folder, tokenizer, subject: str, shots: int = 5) -> list[tuple[int, str]]:
    import pandas as pd

    def format_example(frame, index, include_answer=True):
        prompt = frame.iloc[index, 0]
        for j in range(frame.shape[1] - 2):
            prompt += "\n{}. {}".format("ABCD"[j], frame.iloc[index, j + 1])
        prompt += "\nAnswer:"
        return prompt + " {}\n\n".format(frame.iloc[index, frame.shape[1] - 1]) if include_answer else prompt

    def gen_prompt(frame, k):
        words = "".join(" " + w for w in subject.split("_"))
        prompt = "The following are multiple choice questions (with answers) about {}.\n\n".format(words)
        return prompt + "".join(format_example(frame, i) for i in range(k))

    dev = pd.read_csv(folder / "dev" / f"{subject}_dev.csv", header=None)[:shots]
    test = pd.read_csv(folder / "test" / f"{subject}_test.csv", header=None)
    prompts = []
    for index in range(test.shape[0]):
        k, end = shots, format_example(test, index, include_answer=False)
        prompt = gen_prompt(dev, k) + end
        while len(tokenizer(prompt, truncation=False, add_special_tokens=False).input_ids) > 2048:
            k -= 1
            prompt = gen_prompt(dev, k) + end
        prompts.append((k, prompt))
    return prompts


@pytest.mark.slow
def test_every_mmlu_prompt_equals_the_references(data_dir, smollm2_tokenizer):
    tokenizer = smollm2_tokenizer  # the 2048-token budget counts the real model's tokens
    folder = data_dir / "mmlu"
    subjects = load_mmlu(folder)
    total = nan_prompts = 0
    for subject, (dev, questions) in subjects.items():
        ours = subject_prompts(tokenizer, subject, dev, questions, 5)
        theirs = reference_prompts(folder, tokenizer, subject)
        assert ours == theirs, subject
        total += len(ours)
        nan_prompts += sum(any(f"\n{letter}. nan\n" in t for letter in "ABCD") for _, t in ours)
    assert total == 14042 and nan_prompts == 10


def test_a_subject_with_dev_questions_and_no_test_file_is_named(tmp_path):
    folder = make_mmlu(tmp_path)
    missing = next((folder / "test").glob("*_test.csv"))
    missing.unlink()
    with pytest.raises(LumeError, match=f"{missing}: missing \\(the subject has dev questions\\)"):
        load_mmlu(folder)
