"""One process against two: how far apart the same unlearning settings land (losses, weights).

Runs tests/ddp_worker.py under `torchrun --nproc_per_node 1` and `2` (gloo, this CPU) for each
method and schedule, float32, and prints the largest difference of a step's loss and of a weight.

    python bench/process_invariance.py [--cases npo+gd,kl]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.test_distributed import INVARIANCE_CASES as CASES  # noqa: E402  (the cases the tests bound)


def tiny_model(folder: Path) -> Path:
    """The tests' tiny Llama and tokenizer (tests/conftest.py), saved once."""
    from lume.data.paths import resolve_data_dir
    from tests.conftest import make_tiny_model, tokenizer

    trained = tokenizer.__wrapped__(resolve_data_dir())
    make_tiny_model(trained).save_pretrained(folder)
    trained.save_pretrained(folder)
    return folder


def split_files(folder: Path) -> list[Path]:
    """Three forget and three retain documents of the release, as the distributed tests take them."""
    from lume import data
    from lume.data.paths import resolve_data_dir

    documents = data.load(resolve_data_dir()).documents
    paths = []
    for split in ("forget", "retain"):
        rows = [r for d in [d for d in documents if d.split == split][:3] for r in d.records]
        paths.append(folder / f"{split}.jsonl")
        paths[-1].write_text("".join(json.dumps({"id": r.id, "input": r.input, "output": r.output, "task": r.task,
                                                 "split": split}) + "\n" for r in rows))
    return paths


def trained(model: Path, splits: list[Path], out: Path, options: dict, processes: int) -> tuple[list, dict]:
    """(per-step losses, weights) of one run of the worker on PROCESSES processes."""
    from lume.models import load_model

    out.parent.mkdir(parents=True)
    command = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", str(processes),
               str(ROOT / "tests" / "ddp_worker.py"), str(model), *map(str, splits), str(out), json.dumps(options)]
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT, timeout=600)
    losses = [row["loss"] for row in json.loads((out / "lume_unlearn.json").read_text())["losses"]]
    return losses, load_model(out, dtype="float32", device="cpu").model.state_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated names of CASES")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model, splits = tiny_model(scratch / "model"), split_files(scratch)
        print("| case | steps | largest loss difference | largest weight difference |\n|---|---|---|---|")
        for name in args.cases.split(","):
            options = {"stage": "unlearn", "mixed_precision": "no", **CASES[name]}
            one = trained(model, splits, scratch / name / "one" / "out", {**options, "fsdp": False}, 1)
            two = trained(model, splits, scratch / name / "two" / "out", options, 2)
            loss_gap = max(abs(a - b) for a, b in zip(one[0], two[0]))
            weight_gap = max(float((one[1][k] - two[1][k]).abs().max()) for k in one[1])
            print(f"| {name} | {len(one[0])} | {loss_gap:.2e} | {weight_gap:.2e} |", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
