import math

import pytest

from lume.metrics import (AGGREGATE_ORDER, auc, can_still_match, exact_match, final_score,
                          mia_score, mmlu_flag, rouge_l_recall, task_aggregate)


def test_rouge_l_recall_stems_and_counts_the_longest_common_subsequence():
    # stems: the cat are run / the cat run -> LCS 3 of 4 target tokens
    assert rouge_l_recall("the cats are running", "the cat runs") == pytest.approx(0.75)
    assert rouge_l_recall("a b c d", "d c b a") == pytest.approx(0.25)
    assert rouge_l_recall("Paris is big", "") == 0.0
    # recall, not F: extra predicted words cost nothing
    assert rouge_l_recall("the cat", "the cat sat on the mat today") == 1.0


def test_exact_match_ignores_only_surrounding_whitespace_and_case():
    assert exact_match("Paris", "  paris\n") == 1.0
    assert exact_match(" The City. ", "the city.") == 1.0
    assert exact_match("Paris.", "Paris") == 0.0
    assert exact_match("New York", "New  York") == 0.0
    assert exact_match("1971-02-17", "1971-02-17 ") == 1.0


def test_can_still_match_is_false_only_when_the_answer_is_out_of_reach():
    assert can_still_match("", "Paris")
    assert can_still_match(" Pa", "Paris")
    assert can_still_match(" PARIS \n", "paris")
    assert can_still_match("The city ", "The city.")  # a later "." drops the space
    assert can_still_match("Caf\ufffd", "Café")  # half-decoded character
    assert not can_still_match(" Lyon", "Paris")
    assert not can_still_match("Paris is", "Paris")
    assert not can_still_match("Paris.", "Paris")


def test_can_still_match_never_stops_a_generation_of_the_gold_answer(tokenizer, data_dir):
    """Every token prefix of every real gold answer, decoded as the protocol does, is kept."""
    from lume import data
    from lume.generation import decode

    answers = {r.output for r in data.load(data_dir).records if r.kind == "qa"}
    assert len(answers) > 2000
    for answer in answers:
        for text in (" " + answer, answer):
            ids = tokenizer(text, add_special_tokens=False).input_ids
            for end in range(len(ids) + 1):
                assert can_still_match(decode(tokenizer, ids[:end]), answer), (answer, end)


def _means(forget: float, retain: float) -> dict:
    return {key: forget if key[0] == "forget" else retain for key in AGGREGATE_ORDER}


def test_task_aggregate_inverts_forget_and_takes_the_harmonic_mean():
    assert task_aggregate(_means(0.0, 1.0)) == pytest.approx(1.0)
    assert task_aggregate(_means(0.5, 0.5)) == pytest.approx(0.5)
    means = _means(0.2, 0.6)  # six 0.8s and six 0.6s
    assert task_aggregate(means) == pytest.approx(12 / (6 / 0.8 + 6 / 0.6))
    means[("retain", "Task2", "knowledge")] = 0.0
    assert task_aggregate(means) == 0.0
    means = _means(0.0, 1.0)
    means[("forget", "Task3", "regurgitation")] = 1.0  # fully remembered forget item -> 0
    assert task_aggregate(means) == 0.0
    with pytest.raises(ValueError, match="no items"):
        task_aggregate({})


def test_auc_direction_and_mia_score():
    members = [True, True, False, False]
    assert auc(members, [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert auc(members, [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert auc(members, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert mia_score(1.0) == 0.0 and mia_score(0.0) == 0.0 and mia_score(0.5) == 1.0
    assert mia_score(0.75) == pytest.approx(0.5)


def test_final_score_and_mmlu_flag():
    assert final_score(0.3, 0.6, 0.9) == pytest.approx(0.6)
    assert mmlu_flag(0.36, 0.4944) is True  # 0.36 < 0.75 * 0.4944 = 0.3708
    assert mmlu_flag(0.38, 0.4944) is False
    assert mmlu_flag(0.38, None) is None
    assert math.isclose(0.75 * 0.4944, 0.3708)
