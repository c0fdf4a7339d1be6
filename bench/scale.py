"""Unlearning throughput with 1 and 2 processes on this machine (torchrun over gloo on a CPU,
NCCL on GPUs), printed as a ratio.

    python bench/scale.py [--model smollm2-135m] [--steps 6] [--docs 4]

Each process counts the tokens it trained on; the total is their sum over the slowest
process's training time. On a CPU the cores are shared: 1 process gets every core as threads,
2 processes get half each, so the ratio shows what data parallelism adds over threads.
Data-parallel evaluation is not built yet, so evaluation rows/s are not measured.
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


def run(processes: int, model: str, forget: Path, retain: Path, out: Path, steps: int) -> dict:
    threads = max(1, (os.cpu_count() or 1) // processes)
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [str(torchrun), "--nproc_per_node", str(processes), "-m", "lume", "unlearn", model, str(retain),
               str(forget), str(out), "--steps", str(steps), "--method", "npo+gd", "--overwrite"]
    subprocess.run(command, check=True, env=environment, capture_output=True, text=True)
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


if __name__ == "__main__":
    main()
