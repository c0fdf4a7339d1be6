"""Reference protocol (one prompt at a time) against lume's evaluation, on the same items.

    python bench/eval_speed.py [--rows 200] [--seed 0] [--mmlu-subjects 8] [--mmlu-limit 20]
    python bench/eval_speed.py --device cuda --backend vllm     # on a GPU with vLLM installed

Prints the generation speed-up, the share of identical generations, every aggregate number
from both, and MMLU time with and without few-shot prefix reuse. Model: SmolLM2-135M.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from lume import data
from lume.data.mmlu import load_mmlu
from lume.inference import BATCH_SIZE, MAX_NEW_TOKENS, BackendOptions, generate_reference, open_backend
from lume.metrics.mmlu import evaluate_mmlu, summarise_mmlu
from lume.metrics import AGGREGATE_ORDER, can_still_match, exact_match, rouge_l_recall, task_aggregate, task_means
from lume.models import load_model


def scored(records, texts):
    return [{"split": r.split, "task": r.task, "metric": "regurgitation" if r.kind == "sc" else "knowledge",
             "score": rouge_l_recall(r.output, t) if r.kind == "sc" else exact_match(r.output, t)}
            for r, t in zip(records, texts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--mmlu-subjects", type=int, default=8)
    parser.add_argument("--mmlu-limit", type=int, default=20)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", choices=("hf", "vllm"), default="hf")
    parser.add_argument("--only", choices=("generation", "mmlu"), default=None, help="run one half")
    args = parser.parse_args()
    torch.manual_seed(0)
    loaded = load_model("smollm2-135m", device=args.device)
    dataset = data.load(args.data_dir)
    records = random.Random(args.seed).sample(dataset.records, args.rows)
    print(f"{len(records)} rows ({sum(r.kind == 'sc' for r in records)} sc), model {loaded.name}, "
          f"{torch.get_num_threads()} threads, {loaded.model.dtype}, {loaded.model.device}, backend {args.backend}")
    if args.only != "mmlu":
        compare_generation(args, loaded, records)
    if args.only != "generation":
        compare_mmlu(args, loaded, dataset)


def compare_generation(args, loaded, records) -> None:
    model, tokenizer = loaded.model, loaded.tokenizer
    backend = open_backend(args.backend, model, tokenizer, loaded.path, BackendOptions(batch_size=args.batch_size))
    start = time.time()
    reference = [generate_reference(model, tokenizer, r.input) for r in records]
    reference_s = time.time() - start
    start = time.time()
    fast = backend.generate([r.input for r in records], max_new_tokens=MAX_NEW_TOKENS,
                            keep_going=[(lambda t, g=r.output: can_still_match(t, g)) if r.kind == "qa" else None
                                        for r in records])
    fast_s = time.time() - start

    full = [g for g in fast if g.stop != "early"]
    identical = sum(g.text == ref for g, ref in zip(fast, reference) if g.stop != "early")
    reference_items, fast_items = scored(records, reference), scored(records, [g.text for g in fast])
    same_scores = sum(a["score"] == b["score"] for a, b in zip(reference_items, fast_items))
    print(f"generation: reference {reference_s:.1f} s, lume {fast_s:.1f} s, speed-up {reference_s / fast_s:.2f}x")
    print(f"identical generations: {identical}/{len(full)} ({identical / len(full):.1%}) of rows decoded to "
          f"the end; {len(fast) - len(full)} QA rows stopped early once they could not match")
    print(f"identical per-item scores: {same_scores}/{len(records)}")
    ref_means, fast_means = task_means(reference_items), task_means(fast_items)
    print(f"{'number':34} {'reference':>9} {'lume':>9}")
    for key in AGGREGATE_ORDER:
        print(f"{'/'.join(key):34} {ref_means.get(key, float('nan')):9.3f} {fast_means.get(key, float('nan')):9.3f}")
    if all(key in ref_means for key in AGGREGATE_ORDER):
        print(f"{'task aggregate':34} {task_aggregate(ref_means):9.3f} {task_aggregate(fast_means):9.3f}")
    equal = all(round(ref_means[k], 3) == round(fast_means[k], 3) for k in ref_means)
    print(f"every aggregate number equal to 3 decimals: {equal}")


def compare_mmlu(args, loaded, dataset) -> None:
    model, tokenizer = loaded.model, loaded.tokenizer

    folder = dataset.data_dir / "mmlu"
    subjects = dict(list(load_mmlu(folder, args.mmlu_limit, args.seed).items())[:args.mmlu_subjects])
    start = time.time()
    plain = evaluate_mmlu(model, tokenizer, subjects, reuse_prefix=False)
    plain_s = time.time() - start
    start = time.time()
    reused = evaluate_mmlu(model, tokenizer, subjects)
    reused_s = time.time() - start
    agree = sum(a["prediction"] == b["prediction"] for a, b in zip(plain, reused))
    print(f"MMLU ({len(plain)} questions, {len(subjects)} subjects): one prompt at a time {plain_s:.1f} s, "
          f"prefix reuse {reused_s:.1f} s, speed-up {plain_s / reused_s:.2f}x; same predictions "
          f"{agree}/{len(plain)}; accuracy {summarise_mmlu(plain)['accuracy']:.3f} vs "
          f"{summarise_mmlu(reused)['accuracy']:.3f}")


if __name__ == "__main__":
    main()
