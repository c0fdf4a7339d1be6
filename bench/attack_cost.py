"""What the membership attacks and the extraction section add to an evaluation: the same target
evaluated with the loss attack alone and with everything on, alternating, each from a fresh
output folder (the base model's Reference losses cached after the first run, as in a study).

    python bench/attack_cost.py TARGET [--repeats 2] [--mmlu-subjects 4] [--mmlu-limit 10]

TARGET: a target lume built (`lume memorize --preset demo`). Prints each run's seconds and the
ratio of the medians; issue 32's bar is 1.3x.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lume.metrics.mia as mia
import lume.metrics.uncertainty as uncertainty
import lume.stages.evaluation.membership_section as membership
from lume.stages.evaluation import EvalConfig, evaluate


def loss_only(on: bool) -> None:
    """Switch to the evaluation with the loss attack alone (no GradNorm, Reference, other AUCs or
    their intervals) or back to everything."""
    membership.MIA_ATTACKS = uncertainty.MIA_ATTACKS = ("loss",) if on else mia.MIA_ATTACKS
    membership.reference_losses = (lambda *_: {}) if on else REFERENCE
    mia.output_gradient_norm = (lambda *_: 0.0) if on else GRADIENT_NORM


REFERENCE, GRADIENT_NORM = membership.reference_losses, mia.output_gradient_norm


def timed(target: str, config: EvalConfig) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        evaluate(target, Path(out) / "eval", config)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mmlu-subjects", type=int, default=4)
    parser.add_argument("--mmlu-limit", type=int, default=10)
    args = parser.parse_args()
    base = dict(mia_set="none", mmlu_subjects=args.mmlu_subjects, mmlu_limit=args.mmlu_limit, progress=False)
    timed(args.target, EvalConfig(**base))  # warm: the base model's Reference losses into the cache
    times: dict[str, list[float]] = {"loss attack only": [], "all attacks and extraction": []}
    for _ in range(args.repeats):
        loss_only(True)
        times["loss attack only"].append(timed(args.target, EvalConfig(**base, extraction=False)))
        loss_only(False)
        times["all attacks and extraction"].append(timed(args.target, EvalConfig(**base)))
    for name, values in times.items():
        print(f"{name}: {', '.join(f'{v:.1f}' for v in values)} s")
    ratio = statistics.median(times["all attacks and extraction"]) / statistics.median(times["loss attack only"])
    print(f"ratio (medians): {ratio:.2f}x")


if __name__ == "__main__":
    main()
