"""How a record becomes an unlearning sequence: lume's form, and each team's (TextSettings)."""

import pytest

from lume.errors import LumeError
from lume.training import TextSettings, prompt_answer_example
from lume.inference.batching import IGNORE


def ids(tokenizer, text: str, special: bool = False) -> list[int]:
    return tokenizer(text, add_special_tokens=special).input_ids


def test_lumes_form_is_the_prompt_a_space_the_answer_and_eos(tokenizer):
    example = prompt_answer_example(tokenizer, "Who wrote it?", "Ann Lee")
    prompt, answer = ids(tokenizer, "Who wrote it?", True), ids(tokenizer, " Ann Lee") + [tokenizer.eos_token_id]
    assert example.input_ids == prompt + answer
    assert example.labels == [IGNORE] * len(prompt) + answer


def test_no_space_and_no_eos_as_the_teams_code_wrote_them(tokenizer):
    text = TextSettings(answer_space=False, eos=False)
    example = prompt_answer_example(tokenizer, "Who wrote it?", "Ann Lee", text=text)
    answer = ids(tokenizer, "Ann Lee")
    assert example.input_ids[-len(answer):] == answer and tokenizer.eos_token_id not in example.input_ids
    assert [t for t in example.labels if t != IGNORE] == answer


def test_zjuklabs_prompt_keeps_its_last_tokens_and_the_sequence_is_cut(tokenizer):
    prompt = " ".join(f"word{i}" for i in range(60))
    full = ids(tokenizer, prompt, True)
    text = TextSettings(prompt_tokens=10, max_tokens=14)
    example = prompt_answer_example(tokenizer, prompt, "a long answer that goes on and on", text=text)
    assert example.input_ids[:10] == full[-10:] and len(example.input_ids) == len(example.labels) == 14
    assert example.labels[:10] == [IGNORE] * 10 and IGNORE not in example.labels[10:]


def test_a_cut_per_task_replaces_the_common_one(tokenizer):
    text = TextSettings(max_tokens=50, task_max_tokens={"Task2": 5})
    assert len(prompt_answer_example(tokenizer, "Q one two three?", "A four five", text=text, task="Task2")
               .input_ids) == 5
    assert len(prompt_answer_example(tokenizer, "Q one two three?", "A four five", text=text, task="Task1")
               .input_ids) > 5


@pytest.mark.parametrize("cuts", [{"Task4": 10}, {"Task1": 0}, {"Task1": "10"}])
def test_a_task_cut_must_name_a_task_and_a_length(cuts):
    with pytest.raises(LumeError, match="task_max_tokens: expected a whole number"):
        TextSettings(task_max_tokens=cuts)
