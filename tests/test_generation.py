import pytest

from lume.inference.generation import generate_greedy, generate_reference

PROMPTS = [
    "Who did Catherina seek to protect from Marcile?",
    "In the mystical city of Deadesius, where magic and mystery intertwined, two sorceresses, "
    "Marcile and Catherina, had long been rivals.",
    "What is the birth date of Shay?",
    "Hi",
    "Jamal Eddine Dkhissi (born in Oujda, died 24 March 2017) was a Moroccan actor. During an "
    "acting career spanning over three decades, Dkhissi participated in several works.",
    "What is 2 + 2?",
    "The email address of Ashli is",
]


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batched_generation_equals_one_prompt_at_a_time(tiny_model, tokenizer, batch_size):
    reference = [generate_reference(tiny_model, tokenizer, p, max_new_tokens=20) for p in PROMPTS]
    batched = generate_greedy(tiny_model, tokenizer, PROMPTS, max_new_tokens=20, batch_size=batch_size)
    assert [g.text for g in batched] == reference
    assert len(set(reference)) > 3  # the prompts really lead to different outputs
    assert all(g.stop == "length" and g.new_tokens == 20 for g in batched)


def test_rows_stop_at_eos_independently(tokenizer):
    from tests.conftest import make_tiny_model

    model = make_tiny_model(tokenizer, seed=1)
    free = generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=12, batch_size=4)
    # Make a token that one prompt produces mid-way the end-of-sequence token.
    eos = tokenizer(free[1].text, add_special_tokens=False).input_ids[4]
    model.generation_config.eos_token_id = eos
    reference = [generate_reference(model, tokenizer, p, max_new_tokens=12) for p in PROMPTS]
    batched = generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=12, batch_size=4)
    assert [g.text for g in batched] == reference
    stops = [g.stop for g in batched]
    assert "eos" in stops and "length" in stops
    assert batched[1].new_tokens <= 5


def test_keep_going_rule_ends_a_row_early_without_touching_others(tiny_model, tokenizer):
    full = generate_greedy(tiny_model, tokenizer, PROMPTS[:3], max_new_tokens=16, batch_size=3)
    rules = [None, lambda text: len(text) < 5, None]
    calls = []
    cut = generate_greedy(tiny_model, tokenizer, PROMPTS[:3], max_new_tokens=16, batch_size=3,
                          keep_going=rules, on_done=lambda i, g: calls.append(i))
    assert cut[1].stop == "early" and cut[1].new_tokens < 16
    assert full[1].text.startswith(cut[1].text)
    assert [cut[0].text, cut[2].text] == [full[0].text, full[2].text]
    assert sorted(calls) == [0, 1, 2]


def test_the_checkpoints_generation_config_is_followed_batched(tokenizer):
    from tests.conftest import make_tiny_model

    model = make_tiny_model(tokenizer, seed=2)
    plain = generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=24, batch_size=4)
    model.generation_config.repetition_penalty = 1.5
    model.generation_config.no_repeat_ngram_size = 2
    model.generation_config.suppress_tokens = [tokenizer(" the", add_special_tokens=False).input_ids[0]]
    reference = [generate_reference(model, tokenizer, p, max_new_tokens=24) for p in PROMPTS]
    batched = generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=24, batch_size=4)
    assert [g.text for g in batched] == reference
    assert [g.text for g in plain] != reference  # the settings really change the generations


def test_a_beam_search_config_falls_back_to_one_prompt_at_a_time(tokenizer, caplog):
    from tests.conftest import make_tiny_model

    model = make_tiny_model(tokenizer, seed=2)
    model.generation_config.num_beams = 3
    reference = [generate_reference(model, tokenizer, p, max_new_tokens=10) for p in PROMPTS[:3]]
    batched = generate_greedy(model, tokenizer, PROMPTS[:3], max_new_tokens=10, batch_size=4)
    assert [g.text for g in batched] == reference
    assert "num_beams=3" in caplog.text
