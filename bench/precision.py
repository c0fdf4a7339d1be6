"""float32 against bf16 on this machine: a matmul, one training step and batched generation of
SmolLM2-135M, side by side, and what `mixed_precision: auto` picks here.

    python bench/precision.py [--tokens 64] [--new-tokens 16] [--prompts 4]

Training runs as lume trains (float32 weights, AdamW, the forward under bf16 autocast or not);
generation as lume evaluates (the model loaded in that dtype). Sizes are small on purpose: on a
CPU that emulates bf16 each bf16 part runs tens of times slower than its float32 twin.
Run it alone: a second process on the cores slows torch's thread pool several times over.
"""

from __future__ import annotations

import argparse
import time

import torch

from lume import data
from lume.models import DEFAULT_MODEL, load_model
from lume.training.precision import bf16_slowdown, choose, cpu_capability, native_bf16


def _timed(work, repeats: int) -> float:
    """Seconds per call of `work`, after one warm-up call."""
    work()
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    return (time.perf_counter() - started) / repeats


def training_tokens_per_second(folder, texts: list[str], tokens: int, autocast: bool, repeats: int) -> float:
    """One optimiser step (forward, backward, AdamW) on the first `tokens` tokens of each text, one batch."""
    loaded = load_model(folder, dtype="float32", device="cpu")
    model = loaded.model.train()
    input_ids = torch.tensor([loaded.tokenizer(text).input_ids[:tokens] for text in texts])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return input_ids.numel() / _timed(step, repeats)


def generation_tokens_per_second(folder, prompts: list[str], dtype: str, new_tokens: int) -> float:
    """Greedy batched generation (lume's decoder) with the model loaded in `dtype`; no early stop."""
    from lume.inference.generation import generate_greedy

    loaded = load_model(folder, dtype=dtype, device="cpu")
    loaded.model.generation_config.eos_token_id = None  # every row decodes `new_tokens` tokens
    run = lambda: generate_greedy(loaded.model, loaded.tokenizer, prompts, max_new_tokens=new_tokens,  # noqa: E731
                                  batch_size=len(prompts))
    return len(prompts) * new_tokens / _timed(run, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="tokens per training sequence (2 sequences)")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1, help="timed training steps after one warm-up")
    args = parser.parse_args()

    from lume.models import resolve_model_path

    folder = resolve_model_path(DEFAULT_MODEL)[1]
    records = data.load().records
    texts = [r.input + " " + r.output for r in records if len(r.input) + len(r.output) > 8 * args.tokens][:2]
    prompts = [r.input for r in records[:args.prompts]]
    print(f"CPU capability {cpu_capability()}, native bf16 (oneDNN): {native_bf16('cpu')}, "
          f"threads {torch.get_num_threads()}")
    print(choose("auto", cpu=True).line())
    print(f"matmul 256x576x768: bf16 autocast runs at {1 / bf16_slowdown(0.5):.3f}x float32's speed")
    rows = []
    train = [training_tokens_per_second(folder, texts, args.tokens, autocast, args.repeats)
             for autocast in (False, True)]
    rows.append(("training step (SmolLM2-135M, AdamW)", *train))
    generate = [generation_tokens_per_second(folder, prompts, dtype, args.new_tokens)
                for dtype in ("float32", "bfloat16")]
    rows.append((f"generation ({args.prompts} prompts x {args.new_tokens} tokens)", *generate))
    print("| part | float32 tokens/s | bf16 tokens/s | bf16 / float32 |")
    print("|---|---|---|---|")
    for name, fp32, bf16 in rows:
        print(f"| {name} | {fp32:.1f} | {bf16:.1f} | {bf16 / fp32:.3f} |")


if __name__ == "__main__":
    main()
