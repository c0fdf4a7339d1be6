"""End-to-end checks on the real SmolLM2-135M and the real LUME data."""

import random

import pytest
import torch

from lume import data
from lume.inference.generation import generate_greedy, generate_reference
from lume.models import load_model


@pytest.mark.slow
def test_builtin_model_loads_offline_in_float32_with_a_pad_token():
    loaded = load_model("smollm2-135m", device="cpu")
    assert loaded.model.dtype == torch.float32
    assert loaded.tokenizer.pad_token_id == loaded.tokenizer.eos_token_id
    assert loaded.tokenizer.padding_side == "left"
    assert sum(p.numel() for p in loaded.model.parameters()) > 100_000_000
    assert loaded.fingerprint == load_model("smollm2-135m", device="cpu").fingerprint


@pytest.mark.slow
def test_batched_generation_matches_the_reference_on_real_prompts(data_dir):
    loaded = load_model("smollm2-135m", device="cpu")
    records = data.load(data_dir).records
    sample = random.Random(3).sample(records, 10)
    prompts = [r.input for r in sample]
    reference = [generate_reference(loaded.model, loaded.tokenizer, p, max_new_tokens=40) for p in prompts]
    batched = generate_greedy(loaded.model, loaded.tokenizer, prompts, max_new_tokens=40, batch_size=5)
    assert [g.text for g in batched] == reference
    assert any(g.new_tokens == 40 for g in batched)
