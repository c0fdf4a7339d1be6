"""Every unlearning method with its defaults on the demo target: forgetting, utility, speed, memory.

    python bench/unlearn.py [--target DIR] [--methods npo,gd,...] [--out runs/bench-unlearn]

Each method runs in its own process so that peak memory (max RSS on a CPU, max allocated on a
GPU) is its own. "finetune" is plain fine-tuning (NLL on the same forget batch), the memory
baseline NPO is compared against. Prints forget and retain regurgitation / knowledge before
and after (on the target's trained documents), tokens/s and peak memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BASELINE = "finetune"


def run_one(method: str, target: Path, out: Path) -> None:
    """In a child process: unlearn, then score the trained documents; print one JSON line."""
    from lume import data
    from lume.data.manifest import read_manifest
    from lume.models import load_model
    from lume.stages.target import memorisation_scores
    from lume.stages.unlearning import UnlearnConfig, unlearn
    from lume.stages.unlearning.methods.base import Method, nll, register

    @register
    class FineTune(Method):  # the memory baseline: ordinary training on the same batch
        name = BASELINE

        def loss(self, context, forget, retain):
            value = nll(context.model, forget)
            return value, {}

    report = unlearn(target, out / method, UnlearnConfig(method=method, progress=False))
    loaded = load_model(out / method, device="cpu")
    documents = read_manifest(target).selection(data.load().documents).chosen
    scores = memorisation_scores(loaded.model, loaded.tokenizer, documents)
    print(json.dumps({"method": method, "scores": scores, "tokens_per_second": report.tokens_per_second,
                      "peak_memory_mb": report.peak_memory_mb, "seconds": report.train_seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, help="target folder (default: build or reuse the demo target)")
    parser.add_argument("--methods", default=None, help="comma-separated (default: all registered)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-unlearn"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return run_one(args.one, args.target, args.out)

    from lume import data
    from lume.data.manifest import read_manifest
    from lume.models import load_model
    from lume.stages.target import memorisation_scores
    from lume.study.course import build_target
    from lume.study.run import RunConfig
    from lume.stages.unlearning.methods import METHODS

    target = args.target or build_target(RunConfig())
    methods = args.methods.split(",") if args.methods else [BASELINE] + sorted(METHODS)
    loaded = load_model(target, device="cpu")
    documents = read_manifest(target).selection(data.load().documents).chosen
    before = memorisation_scores(loaded.model, loaded.tokenizer, documents)
    # One JSON line per finished method, so an interrupted benchmark resumes where it stopped.
    results_file = args.out / "results.jsonl"
    args.out.mkdir(parents=True, exist_ok=True)
    finished = {}
    if results_file.is_file():
        finished = {row["method"]: row for row in map(json.loads, results_file.read_text().splitlines())}
    rows = []
    for method in methods:
        if method not in finished:
            result = subprocess.run([sys.executable, __file__, "--one", method, "--target", str(target),
                                     "--out", str(args.out)], capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{method}: failed\n{result.stderr[-2000:]}")
                continue
            finished[method] = json.loads(result.stdout.strip().splitlines()[-1])
            with results_file.open("a") as handle:
                handle.write(json.dumps(finished[method]) + "\n")
        rows.append(finished[method])
        f = finished[method]["scores"]["forget"]
        print(f"done: {method} (forget regurgitation {f['regurgitation']:.3f})", flush=True)

    header = "| method | forget regurg. | forget know. | retain regurg. | retain know. | tokens/s | peak MB | s |"
    print(header)
    print("|---" * 8 + "|")
    print(f"| target (before) | {before['forget']['regurgitation']:.3f} | {before['forget']['knowledge']:.3f} | "
          f"{before['retain']['regurgitation']:.3f} | {before['retain']['knowledge']:.3f} | | | |")
    for row in rows:
        f, r = row["scores"]["forget"], row["scores"]["retain"]
        print(f"| {row['method']} | {f['regurgitation']:.3f} | {f['knowledge']:.3f} | {r['regurgitation']:.3f} | "
              f"{r['knowledge']:.3f} | {row['tokens_per_second']:.0f} | {row['peak_memory_mb']:.0f} | "
              f"{row['seconds']:.0f} |")
    memory = {row["method"]: row["peak_memory_mb"] for row in rows}
    if BASELINE in memory and "npo" in memory:
        print(f"NPO peak memory / plain fine-tuning: {memory['npo'] / memory[BASELINE]:.3f} (target <= 1.15)")
    good = [row["method"] for row in rows
            if row["scores"]["forget"]["regurgitation"] < 0.5 * before["forget"]["regurgitation"]
            and row["scores"]["retain"]["regurgitation"] >= 0.8 * before["retain"]["regurgitation"]]
    print(f"forget regurgitation below half the target's with retain >= 80 %: {', '.join(good) or 'none'}")


if __name__ == "__main__":
    main()
