"""Unlearning tokens/s and evaluation rows/s with 1 and 2 processes on this machine (torchrun
over gloo on a CPU, NCCL on GPUs), printed as ratios.

    python bench/scale.py [--model smollm2-135m] [--steps 6] [--docs 4]

Unlearning: the main process's tokens times the number of processes, over its training time.
Evaluation: the probes (sc and QA rows, generated to the protocol's 256 tokens) of `--docs`
documents per task and split, over the probe section's time. On a CPU the cores are shared:
1 process gets every core as threads, 2 processes get half each, so the ratios show what data
parallelism adds over threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def write_sets(folder: Path, documents_per_split: int) -> tuple[Path, Path]:
    from lume import data

    documents = data.load().documents
    paths = []
    for split in ("forget", "retain"):
        rows = [r for d in [d for d in documents if d.split == split][:documents_per_split] for r in d.records]
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps({"id": r.id, "input": r.input, "output": r.output, "task": r.task,
                                            "split": split}) + "\n" for r in rows))
        paths.append(path)
    return paths[0], paths[1]


def torchrun(processes: int, arguments: list[str]) -> None:
    threads = max(1, (os.cpu_count() or 1) // processes)
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", str(processes), "-m", "lume"]
    subprocess.run(command + arguments, check=True, env=environment, capture_output=True, text=True)


def evaluation_rows_per_second(processes: int, model: str, docs: int, out: Path) -> float:
    torchrun(processes, ["evaluate", model, "--out", str(out), "--docs-per-task", str(docs), "--no-mia", "--no-mmlu",
                         "--setting", "bootstrap_resamples=0", "--setting", "progress=false"])
    summary = json.loads((out / "summary.json").read_text())
    return summary["data"]["items"] / summary["timings"]["probes_s"]


def run(processes: int, model: str, forget: Path, retain: Path, out: Path, steps: int) -> dict:
    threads = max(1, (os.cpu_count() or 1) // processes)
    torchrun(processes, ["unlearn", model, str(retain), str(forget), str(out), "--steps", str(steps),
                         "--method", "npo+gd", "--overwrite"])
    report = json.loads((out / "lume_unlearn.json").read_text())
    # the report is the main process's: its tokens are 1/N of the step's tokens on average
    return {"processes": processes, "threads_each": threads, "train_seconds": report["train_seconds"],
            "tokens_per_second": report["tokens_per_second"] * processes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--docs", type=int, default=4, help="documents per split")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        forget, retain = write_sets(Path(scratch), args.docs)
        one = run(1, args.model, forget, retain, Path(scratch) / "one", args.steps)
        two = run(2, args.model, forget, retain, Path(scratch) / "two", args.steps)
    for result in (one, two):
        print(f"{result['processes']} process(es) x {result['threads_each']} threads: "
              f"{result['tokens_per_second']:.0f} tokens/s ({result['train_seconds']:.1f} s)")
    print(f"unlearning throughput, 2 processes / 1: {two['tokens_per_second'] / one['tokens_per_second']:.2f}x")
    with tempfile.TemporaryDirectory() as scratch:
        rows = [evaluation_rows_per_second(n, args.model, args.docs // 2 or 1, Path(scratch) / str(n)) for n in (1, 2)]
    print(f"evaluation: 1 process {rows[0]:.2f} rows/s, 2 processes {rows[1]:.2f} rows/s: {rows[1] / rows[0]:.2f}x")


if __name__ == "__main__":
    main()
