"""Several processes through accelerate, on this CPU: `torchrun --nproc_per_node 2` over gloo."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ddp_worker import digest


@pytest.fixture(scope="module")
def split_files(tmp_path_factory, data_dir):
    from lume import data

    folder = tmp_path_factory.mktemp("sets")
    documents = data.load(data_dir).documents
    for split in ("forget", "retain"):
        rows = [r for d in [d for d in documents if d.split == split][:3] for r in d.records]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(
            {"id": r.id, "input": r.input, "output": r.output, "task": r.task, "split": split}) + "\n" for r in rows))
    return folder / "forget.jsonl", folder / "retain.jsonl"


@pytest.mark.slow
@pytest.mark.parametrize("method, device", [("npo+gd", "cpu"), ("simnpo", "default")])
def test_two_processes_train_one_model_and_save_it(tmp_path, tiny_model_dir, split_files, method, device):
    """With or without `--device cpu`: on a machine without a GPU, torchrun's processes are one run."""
    from lume.models import load_model

    out = tmp_path / "run" / "out"
    out.parent.mkdir()
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(Path(__file__).parent / "ddp_worker.py"),
                             str(tiny_model_dir), *map(str, split_files), str(out), method, device],
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [(out.parent / f"rank-{rank}.txt").read_text() for rank in (0, 1)]
    assert ranks[0] == ranks[1]  # DDP kept the two processes' weights identical
    saved = load_model(out, dtype="float32", device="cpu").model
    assert digest(saved.state_dict()) == ranks[0]  # the folder holds exactly the trained weights
    before = load_model(tiny_model_dir, dtype="float32", device="cpu").model
    assert not torch.equal(before.lm_head.weight, saved.lm_head.weight)
    report = json.loads((out / "lume_unlearn.json").read_text())
    assert report["steps"] == 3 and report["processes"] == 2


@pytest.mark.slow
def test_the_cli_under_torchrun_reports_once(tmp_path, tiny_model_dir, split_files):
    forget, retain = split_files
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "lume", "unlearn", str(tiny_model_dir),
                             str(retain), str(forget), str(tmp_path / "out"), "--steps", "2", "--batch-size", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("unlearned model written") == 1, result.stdout
    assert json.loads((tmp_path / "out" / "lume_unlearn.json").read_text())["processes"] == 2


@pytest.mark.slow
def test_evaluation_on_two_processes_shares_the_work_and_equals_one(tmp_path, tiny_model_dir, data_dir):
    from lume.stages.evaluation import EvalConfig, evaluate
    from tests.test_mmlu import make_mmlu

    mmlu = make_mmlu(tmp_path / "mmlu")
    flags = {"docs_per_task": 2, "max_new_tokens": 8, "mia_set": "validation", "mmlu_dir": str(mmlu),
             "bootstrap_resamples": 50}
    alone = evaluate(tiny_model_dir, tmp_path / "one", EvalConfig(data_dir=str(data_dir), progress=False, **flags))
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [str(torchrun), "--nproc_per_node", "2", "-m", "lume", "evaluate", str(tiny_model_dir),
               "--out", str(tmp_path / "two"), "--data-dir", str(data_dir)]
    command += [f"--{key.replace('_', '-')}={value}" for key, value in flags.items() if key != "bootstrap_resamples"]
    result = subprocess.run(command + ["--setting", "bootstrap_resamples=50"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    shared = json.loads((tmp_path / "two" / "summary.json").read_text())
    for key in ("scores", "task_aggregate", "mia", "mia_semeval", "mmlu", "final", "intervals", "bootstrap"):
        assert shared.get(key) == alone.get(key), key
    for name in ("items.jsonl", "mia.jsonl", "mmlu.jsonl"):
        ids = [json.loads(line)["id"] for line in (tmp_path / "two" / name).read_text().splitlines()]
        alone_ids = [json.loads(line)["id"] for line in (tmp_path / "one" / name).read_text().splitlines()]
        assert ids == alone_ids and len(set(ids)) == len(ids), name  # every item once, in the same order
