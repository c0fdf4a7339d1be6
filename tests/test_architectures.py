"""Every architecture users bring: tiny random OLMo (the released targets), OLMo-2, Llama, Qwen2
and GPT-2 (other module names: `transformer.h.N`, Conv1D) through evaluation, every unlearning
method, LoRA and the weight attacks."""

import pytest
import torch

from lume.stages.unlearning import METHODS, UnlearnConfig, unlearn
from lume.training import TrainingSettings
from tests.test_mmlu import make_mmlu

SMALL = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2,
             max_position_embeddings=1024)


def tiny(kind: str, tokenizer):
    import transformers

    ids = dict(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    if kind == "gpt2":
        config = transformers.GPT2Config(n_embd=16, n_layer=3, n_head=2, n_positions=1024, **ids)
    else:
        name = {"olmo": "Olmo", "olmo2": "Olmo2", "llama": "Llama", "qwen2": "Qwen2"}[kind]
        config = getattr(transformers, f"{name}Config")(**SMALL, **ids)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config)


@pytest.fixture(scope="module", params=["olmo", "olmo2", "llama", "qwen2", "gpt2"])
def model_dir(request, tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp(request.param)
    tiny(request.param, tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_evaluation_runs_on_every_architecture(model_dir, tmp_path, data_dir):
    from lume.stages.evaluation import EvalConfig, evaluate

    config = EvalConfig(data_dir=str(data_dir), docs_per_task=1, max_new_tokens=4, mia_set="validation",
                        mmlu_dir=str(make_mmlu(tmp_path / "mmlu")), bootstrap_resamples=10, progress=False)
    summary = evaluate(model_dir, tmp_path / "eval", config).to_json()
    assert summary["final"] is not None and summary["mmlu"]["questions"] > 0


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_on_every_architecture(model_dir, tmp_path, sets, method):
    from lume.models import load_model

    forget, retain = sets
    settings = {"layer": 2} if method == "rmu" else {}
    unlearn(model_dir, tmp_path / "out", UnlearnConfig(method=method, method_settings=settings, steps=1,
                                                       training=TrainingSettings(batch_size=2, learning_rate=1e-2),
                                                       device="cpu", progress=False), forget=forget, retain=retain)
    before = load_model(model_dir, device="cpu").model.state_dict()
    after = load_model(tmp_path / "out", device="cpu").model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed
    if method == "rmu":  # only the MLPs of layers 0-2, found from the structure
        assert all(".mlp." in k for k in changed)


def test_lora_and_quantisation_on_every_architecture(model_dir, tmp_path, sets):
    from lume.models import load_model
    from lume.stages.attacks.quantize import quantize_weights

    forget, retain = sets
    unlearn(model_dir, tmp_path / "lora", UnlearnConfig(method="npo+kl", steps=1, device="cpu", progress=False,
                                                        training=TrainingSettings(batch_size=2, lora_rank=2)),
            forget=forget, retain=retain)
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()
    model = load_model(model_dir, device="cpu").model
    quantized = quantize_weights(load_model(model_dir, device="cpu").model, bits=2)
    weights = [name for name, p in model.named_parameters() if p.dim() == 2 and "wte" not in name
               and "embed" not in name and "wpe" not in name]
    original, rounded = dict(model.named_parameters()), dict(quantized.named_parameters())
    # 2 bits: every linear weight (Linear or GPT-2's Conv1D) holds at most 3 values per output channel
    assert weights and all(not torch.equal(original[n], rounded[n]) for n in weights)


def test_rmu_says_why_when_a_model_has_no_mlp_block_to_train():
    from types import SimpleNamespace

    from lume.errors import LumeError
    from lume.stages.unlearning import build_method

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mixer = torch.nn.Linear(2, 2)

    class NoMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(num_hidden_layers=2)
            self.blocks = torch.nn.ModuleList([Block(), Block()])

    with pytest.raises(LumeError, match=r"rmu: decoder layer blocks.0 \(Block\) has no MLP block"):
        build_method("rmu", {"layer": 1}).select_parameters(NoMLP())
