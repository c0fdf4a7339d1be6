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
    from lume.inference.generation import decode

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


def _items(scores: dict[str, list[float]]) -> list[dict]:
    """One sc and one qa item per document; `scores[doc] = [regurgitation, knowledge]`, all in forget/Task1."""
    return [{"split": "forget", "task": "Task1", "doc_id": doc, "metric": metric, "score": value}
            for doc, values in scores.items() for metric, value in zip(("regurgitation", "knowledge"), values)]


def test_bootstrap_resamples_are_the_same_for_every_model_on_the_same_documents():
    from lume.metrics.uncertainty import paired_difference, probe_replicates

    first = probe_replicates(_items({f"d{i}": [i / 10, i % 2] for i in range(10)}), seed=3)
    again = probe_replicates(_items({f"d{i}": [i / 10, i % 2] for i in reversed(range(10))}), seed=3)
    assert (first["forget/Task1/regurgitation"] == again["forget/Task1/regurgitation"]).all()  # order-free
    shifted = probe_replicates(_items({f"d{i}": [i / 10 + 0.05, i % 2] for i in range(10)}), seed=3)
    # a model better by 0.05 on every document: the paired difference is exactly 0.05 in every resample
    difference = paired_difference(shifted["forget/Task1/regurgitation"], first["forget/Task1/regurgitation"])
    assert difference["interval"] == pytest.approx([0.05, 0.05]) and difference["significant"]
    assert not paired_difference(first["forget/Task1/knowledge"], again["forget/Task1/knowledge"])["significant"]
    assert probe_replicates(_items({"d0": [0.5, 1]}), seed=4)["forget/Task1/regurgitation"].tolist() == [0.5] * 1000


def test_bootstrap_intervals_are_sound():
    import numpy as np

    from lume.metrics.uncertainty import interval, mia_replicates, mmlu_replicates

    rows = [{"id": f"s/{i}", "correct": i % 4 == 0} for i in range(400)]  # accuracy 0.25
    low, high = interval(mmlu_replicates(rows, seed=0)["mmlu"])
    half_width = 1.96 * np.sqrt(0.25 * 0.75 / 400)
    assert low < 0.25 < high and (high - low) / 2 == pytest.approx(half_width, rel=0.15)
    separated = [{"id": f"m{i}", "member": True, "loss": 1.0 + i / 100} for i in range(20)] + \
                [{"id": f"n{i}", "member": False, "loss": 3.0 + i / 100} for i in range(20)]
    replicates = mia_replicates(separated, seed=0)
    assert replicates["mia_auc"] == pytest.approx(np.ones(1000))
    assert replicates["mia_score"] == pytest.approx(np.zeros(1000))


def test_each_resampled_aggregate_is_the_protocols_harmonic_mean():
    import statistics

    from lume.metrics import AGGREGATE_ORDER
    from lume.metrics.uncertainty import _draws, probe_replicates

    items = [{"split": s, "task": t, "doc_id": f"{s}{t}{d}", "metric": m, "score": (d + 1) / 4}
             for s, t, m in AGGREGATE_ORDER for d in range(3)]
    replicates = probe_replicates(items, seed=1, resamples=5)
    numbers = []
    for split, task, _metric in AGGREGATE_ORDER:
        docs = sorted(f"{split}{task}{d}" for d in range(3))
        picked = _draws(f"probes/{split}/{task}", docs, 1, 5)[2]
        mean = sum((int(docs[i][-1]) + 1) / 4 for i in picked) / 3
        numbers.append(1 - mean if split == "forget" else mean)
    assert replicates["task_aggregate"][2] == pytest.approx(statistics.harmonic_mean(numbers))


def test_the_output_layer_gradient_norm_is_autograds():
    import torch

    from lume.metrics.mia import output_gradient_norm

    torch.manual_seed(0)
    tokens, width, vocabulary = 7, 5, 11
    hidden, weight = torch.randn(tokens, width), torch.randn(vocabulary, width, requires_grad=True)
    targets = torch.tensor([3, 1, 3, 0, 10, 1, 3])  # repeated targets exercise the [y_t = y_s] term
    torch.nn.functional.cross_entropy(hidden @ weight.T, targets).backward()
    probs = torch.softmax(hidden @ weight.detach().T, -1)
    assert output_gradient_norm(probs, targets, hidden) == pytest.approx(weight.grad.norm().item(), rel=1e-5)


def test_exact_memorisation_and_extraction_strength_on_known_predictions():
    import torch

    from lume.metrics.extraction import exact_memorisation, extraction_strength

    targets = torch.tensor([5, 6, 7, 8, 9])
    all_right, last_two = targets.clone(), torch.tensor([0, 6, 0, 8, 9])  # wrong at positions 0 and 2
    assert exact_memorisation(all_right, targets) == 1.0 and extraction_strength(all_right, targets) == 1.0
    assert exact_memorisation(last_two, targets) == pytest.approx(3 / 5)
    assert extraction_strength(last_two, targets) == pytest.approx(1 - 3 / 5)  # the shortest prefix: 3 tokens
    none = torch.tensor([0, 0, 0, 0, 0])
    assert exact_memorisation(none, targets) == 0.0 and extraction_strength(none, targets) == 0.0


def test_extraction_reads_the_continuation_the_model_would_reproduce(tokenizer, tiny_model):
    """A model's own greedy continuation, given as the answer, is reproduced token for token."""
    import torch

    from lume.stages.evaluation.extraction_section import extraction_rows

    prompt = "Once upon a time"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        greedy = tiny_model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    continuation = tokenizer.decode(greedy[0, ids.shape[1]:], skip_special_tokens=True)
    rows = []
    documents = [{"id": "d", "split": "forget", "task": "Task1", "input": prompt, "output": continuation},
                 {"id": "e", "split": "retain", "task": "Task1", "input": prompt, "output": "zebra quantum " * 4}]
    extraction_rows(tiny_model, tokenizer, documents, rows.append)
    ours = next(r for r in rows if r["id"] == "d")
    assert ours["exact_memorisation"] > next(r for r in rows if r["id"] == "e")["exact_memorisation"]
