"""What a lent GPU can tell us in under 5 minutes: exactness and speed of bf16 generation,
vLLM against transformers, unlearning throughput and model FLOPs utilisation.

    python bench/gpu_check.py                      # on the GPU machine (nothing downloaded)
    python bench/gpu_check.py --device cpu --small # a dry run of the same code on a CPU

The model is randomly initialised with SmolLM2-135M's shape (or a 1B Llama shape for the
unlearning throughput), the tokenizer a byte-level BPE trained here on LUME text, the prompts
LUME's own: no hub, no network. Greedy decoding is deterministic for any weights, so "batched
equals one at a time" is checked as well as on a trained model.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import time
from pathlib import Path

import torch

from lume import data
from lume.inference import BackendOptions, generate_greedy, generate_reference, open_backend
from lume.stages.unlearning import UnlearnConfig, unlearn
from lume.training import TrainingSettings

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}  # dense bf16, from the vendors' sheets


def tokenizer_from_lume(records, vocab: int = 8000):
    """A byte-level BPE trained on LUME text: any text encodes, nothing is downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([r.input + " " + r.output for r in records], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def random_llama(tokenizer, hidden: int, layers: int, heads: int, intermediate: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads // 3 or 1,
                         max_position_embeddings=2048, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def check_generation(model, tokenizer, prompts: list[str], max_new_tokens: int) -> dict:
    start = time.time()
    reference = [generate_reference(model, tokenizer, p, max_new_tokens) for p in prompts]
    one_at_a_time = time.time() - start
    start = time.time()
    batched = generate_greedy(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    batched_s = time.time() - start
    same = sum(g.text == r for g, r in zip(batched, reference))
    return {"prompts": len(prompts), "identical": same, "one_at_a_time_s": round(one_at_a_time, 2),
            "batched_s": round(batched_s, 2), "speed_up": round(one_at_a_time / batched_s, 2),
            "batched": batched}


def check_vllm(folder: Path, model, tokenizer, prompts: list[str], max_new_tokens: int, batched) -> dict:
    if importlib.util.find_spec("vllm") is None:
        return {"skipped": "vLLM is not installed"}
    backend = open_backend("vllm", model, tokenizer, folder, BackendOptions(vllm_memory=0.3))
    start = time.time()
    outputs = backend.generate(prompts, max_new_tokens=max_new_tokens)
    seconds = time.time() - start
    same = sum(a.text == b.text for a, b in zip(outputs, batched))
    return {"identical_to_transformers": same, "prompts": len(prompts), "seconds": round(seconds, 2)}


def check_unlearning(folder: Path, records, device: str, steps: int, out: Path) -> dict:
    forget = [r for r in records if r.split == "forget"]
    retain = [r for r in records if r.split == "retain"]
    config = UnlearnConfig(method="npo+gd", steps=steps, device=device, progress=False,
                           training=TrainingSettings(batch_size=8, learning_rate=1e-5))
    report = unlearn(folder, out, config, forget=forget, retain=retain, overwrite=True)
    return {k: getattr(report, k) for k in ("tokens_per_second", "train_seconds", "peak_memory_mb", "device")}


def model_flops_utilisation(parameters: int, tokens_per_second: float, device: str) -> float | None:
    """6·N FLOPs per token the loop processes (forward and backward; NPO+GD's forget and retain
    rows both count), against the GPU's dense bf16 peak: an estimate (attention FLOPs left out)."""
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    peak = next((tflops for key, tflops in PEAK_BF16_TFLOPS.items() if key in name), None)
    return None if peak is None else 6 * parameters * tokens_per_second / (peak * 1e12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny sizes, for a dry run on a CPU")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    args = parser.parse_args()
    started = time.time()
    records = data.load().records
    tokenizer = tokenizer_from_lume(records)
    prompts = [r.input for r in random.Random(0).sample(records, 8 if args.small else 48)]
    shape = (64, 2, 2, 128) if args.small else (576, 30, 9, 1536)  # SmolLM2-135M's shape
    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    model = random_llama(tokenizer, *shape).to(args.device, dtype).eval()
    results = {"device": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
               "dtype": str(dtype)}
    generation = check_generation(model, tokenizer, prompts, 16 if args.small else 128)  # new tokens
    folder = args.out / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    new_tokens = 16 if args.small else 128
    results["vllm"] = check_vllm(folder, model, tokenizer, prompts, new_tokens, generation.pop("batched"))
    results["generation"] = generation
    big = (64, 2, 2, 128) if args.small else (2048, 16, 16, 8192)  # about 1B parameters
    trained = random_llama(tokenizer, *big)
    trained.save_pretrained(args.out / "train-model")
    tokenizer.save_pretrained(args.out / "train-model")
    results["unlearning"] = check_unlearning(args.out / "train-model", records, args.device, 4 if args.small else 20,
                                             args.out / "unlearned")
    parameters = sum(p.numel() for p in trained.parameters())
    results["unlearning"]["parameters"] = parameters
    results["unlearning"]["mfu"] = model_flops_utilisation(parameters, results["unlearning"]["tokens_per_second"],
                                                           args.device)
    results["seconds"] = round(time.time() - started, 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
