"""lume's training loop against a plain Hugging Face `Trainer` loop on the same GD loss, rows and batches.

    python bench/train_speed.py [--precision no|bf16] [--rounds 2] [--steps 20] [--rows 32] [--batch 4] [--compile]
                                [--loops lume,peer]

The peer is the design open-unlearning uses: a `Trainer` subclass whose `compute_loss` is
GradDiff's, −NLL(forget batch) + NLL(retain batch), with the Trainer's own defaults (fused
AdamW included) except what the two loops must share to train alike: a constant learning rate
of 1e-5, no warm-up, the same seed and precision. Both run SmolLM2-135M (`smollm2-135m`) on the
first ROWS forget and ROWS retain LUME rows, BATCH + BATCH examples a step, the batches lume
draws (`lume.training.sampling.drawn_batches`) given to the peer in the same order. Each run is
its own process (its max RSS, page faults and kernel time its own); rounds alternate the loops.
The peer keeps glibc's own malloc, which hands freed blocks back to the kernel (as a plain HF
loop does); `--loops lume,lume-glibc` measures lume against itself with that malloc
(`LUME_KEEP_FREED_MEMORY=0`, lume.models.heap).

Prints, per run: tokens/s (the real forget + retain tokens of the batches over the training
seconds), max RSS, page faults and kernel seconds; then the ratio, each loop's achieved GFLOP/s
(6 × parameters × tokens / s) against the matmul peak measured on the spot in the same precision
(a 2048² matmul, and beside it the rate of the decoder layer's own matmul shapes: what a step
could reach), and both loss curves.
Measure alone: nothing else on the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LEARNING_RATE = 1e-5


def _rows(count: int):
    from lume import data

    records = data.load().records
    forget = [r for r in records if r.split == "forget"][:count]
    retain = [r for r in records if r.split == "retain"][:count]
    return forget, retain


def run_lume(args) -> dict:
    from lume.stages.unlearning import UnlearnConfig, unlearn
    from lume.training import TrainingSettings

    forget, retain = _rows(args.rows)
    config = UnlearnConfig(method="gd", steps=args.steps, progress=False,
                           training=TrainingSettings(batch_size=args.batch, learning_rate=LEARNING_RATE,
                                                     mixed_precision=args.precision, seed=0,
                                                     compile=args.compile))
    with tempfile.TemporaryDirectory() as out:
        report = unlearn("smollm2-135m", Path(out) / "model", config, forget=forget, retain=retain)
    return {"seconds": report.train_seconds, "tokens": report.tokens, "losses": [row["loss"] for row in report.losses]}


def _peer_batches(args, tokenizer) -> list[dict]:
    """lume's draws, step by step, as (forget, retain) batches padded as lume pads them."""
    from lume.training import collate, prompt_answer_example
    from lume.training.sampling import drawn_batches

    forget, retain = _rows(args.rows)
    examples = [[prompt_answer_example(tokenizer, r.input, r.output) for r in rows] for rows in (forget, retain)]
    batches = []
    for step in range(args.steps):
        picked = drawn_batches(0, step, [range(len(forget)), range(len(retain))], [args.batch, args.batch])
        batches.append({name: collate([pool[i] for i in indices], tokenizer.pad_token_id)
                        for name, pool, indices in zip(("forget", "retain"), examples, picked)})
    return batches


def run_peer(args) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    from lume.models import load_model

    loaded = load_model("smollm2-135m", dtype="float32", device="cpu")
    batches = _peer_batches(args, loaded.tokenizer)
    losses: list[float] = []

    class Batches(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(batches)

    class GradDiff(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = -model(**inputs["forget"]).loss + model(**inputs["retain"]).loss
            losses.append(loss.item())
            return (loss, None) if return_outputs else loss

    with tempfile.TemporaryDirectory() as out:
        arguments = TrainingArguments(output_dir=out, max_steps=args.steps, per_device_train_batch_size=1,
                                      learning_rate=LEARNING_RATE, lr_scheduler_type="constant", seed=0,
                                      bf16=args.precision == "bf16", report_to="none", save_strategy="no",
                                      logging_strategy="no", disable_tqdm=True, use_cpu=True,
                                      dataloader_num_workers=0, remove_unused_columns=False)
        trainer = GradDiff(model=loaded.model, args=arguments, train_dataset=Batches(),
                           data_collator=lambda items: items[0])
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    tokens = sum(int(b[name]["attention_mask"].sum()) for b in batches for name in ("forget", "retain"))
    return {"seconds": seconds, "tokens": tokens, "losses": losses}


# SmolLM2-135M's linear layers (in, out): q and o, k and v (3 key-value heads of 64), gate and up, down
LAYER_SHAPES = [(576, 576)] * 2 + [(576, 192)] * 2 + [(576, 1536)] * 2 + [(1536, 576)]


def _best_seconds(a, b, repeats: int) -> float:
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return best


def _dtype(precision: str):
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float32


def matmul_peak(precision: str, size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a size² × size² matmul in the precision (bf16 or float32), best of `repeats`."""
    import torch

    a, b = (torch.randn(size, size, dtype=_dtype(precision)) for _ in range(2))
    return 2 * size ** 3 / _best_seconds(a, b, repeats) / 1e9


def layer_matmul_rate(precision: str, tokens: int = 1024, repeats: int = 10) -> float:
    """GFLOP/s of the decoder layer's own matmuls on `tokens` tokens (forward, and the backward's
    input and weight gradients): what a step at these shapes could reach, against the square peak."""
    import torch

    flops = seconds = 0.0
    for fan_in, fan_out in LAYER_SHAPES:
        for rows, inner, columns in ((tokens, fan_in, fan_out), (tokens, fan_out, fan_in), (fan_in, tokens, fan_out)):
            a = torch.randn(rows, inner, dtype=_dtype(precision))
            b = torch.randn(inner, columns, dtype=_dtype(precision))
            flops += 2 * rows * inner * columns
            seconds += _best_seconds(a, b, repeats)
    return flops / seconds / 1e9


LOOPS = {"lume": run_lume, "peer": run_peer, "lume-glibc": run_lume}  # each loop: what its process runs
GLIBC_MALLOC = {"peer", "lume-glibc"}  # the loops whose process keeps glibc's own malloc


def _child(loop: str, args) -> dict:
    command = [sys.executable, __file__, "--one", loop, "--precision", args.precision, "--steps", str(args.steps),
               "--rows", str(args.rows), "--batch", str(args.batch)] + (["--compile"] if args.compile else [])
    glibc_malloc = {"LUME_KEEP_FREED_MEMORY": "0"} if loop in GLIBC_MALLOC else {}
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **glibc_malloc})
    if done.returncode:
        raise SystemExit(f"{loop} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("no", "bf16"), default="no", help="no: float32; bf16: autocast")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--compile", action="store_true", help="lume compiles its step (its compile time counts)")
    parser.add_argument("--loops", default="lume,peer", help=f"two of {', '.join(LOOPS)}, comma-separated")
    parser.add_argument("--one", choices=tuple(LOOPS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result = LOOPS[args.one](args)
        finished = resource.getrusage(resource.RUSAGE_SELF)
        result.update(max_rss_gb=finished.ru_maxrss / 2 ** 20, page_faults=finished.ru_minflt - usage.ru_minflt,
                      kernel_seconds=finished.ru_stime - usage.ru_stime)
        print(json.dumps(result))
        return
    loops = args.loops.split(",")
    if len(loops) != 2 or not set(loops) <= set(LOOPS):
        parser.error(f"--loops: two of {', '.join(LOOPS)}, comma-separated")
    import torch

    peak, layer_rate = matmul_peak(args.precision), layer_matmul_rate(args.precision)
    print(f"precision {args.precision}; {torch.get_num_threads()} threads; matmul peak {peak:.0f} GFLOP/s "
          f"(2048²; the decoder layer's own matmul shapes on 1,024 tokens: {layer_rate:.0f})")
    runs = _alternated(args, loops, peak)
    first, second = loops
    for round_, (ours, theirs) in enumerate(zip(runs[first], runs[second])):
        print(f"round {round_ + 1}: {first} / {second} "
              f"{ours['tokens_per_second'] / theirs['tokens_per_second']:.2f}x")
    ours, theirs = runs[first][0]["losses"], runs[second][0]["losses"]
    gap = max(abs(a - b) for a, b in zip(ours, theirs))
    print(f"losses, step by step (largest difference {gap:.2e}):")
    for step, (a, b) in enumerate(zip(ours, theirs), 1):
        print(f"  {step:3} {first} {a:+.5f}  {second} {b:+.5f}")


def _alternated(args, loops: list[str], peak: float) -> dict[str, list[dict]]:
    """Each round runs every loop once, in order; what each run measured, printed as it ends."""
    parameters = 134_515_008  # SmolLM2-135M
    runs = {loop: [] for loop in loops}
    for round_ in range(args.rounds):
        for loop in loops:
            result = _child(loop, args)
            result["tokens_per_second"] = result["tokens"] / result["seconds"]
            runs[loop].append(result)
            flops = 6 * parameters * result["tokens_per_second"] / 1e9
            print(f"round {round_ + 1} {loop}: {result['tokens_per_second']:7.1f} tokens/s ({result['tokens']} "
                  f"tokens, {result['seconds']:.1f} s), {flops:.0f} GFLOP/s = {flops / peak:.0%} of the matmul peak, "
                  f"max RSS {result['max_rss_gb']:.1f} GB, {result['page_faults'] / 1e6:.2f} M page faults and "
                  f"{result['kernel_seconds']:.0f} s in the kernel (the whole process)")
    return runs


if __name__ == "__main__":
    main()
