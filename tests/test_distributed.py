"""Several processes through accelerate, on this CPU: `torchrun --nproc_per_node 2` over gloo."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ddp_worker import PROBE_IDS, digest

# two processes on a free port (`--standalone`): tests running side by side never share one
TORCHRUN = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2"]
# Two processes sum their gradients in another order than one process accumulating the same
# micro-batches (FSDP shards the sums further): equal settings differ by float32 round-off, which
# AdamW's normalised steps carry into the weights. 3 steps at lr 1e-3 on the tiny model
# (bench/process_invariance.py): at most 1.2e-7 in a weight, 3e-5 on a step loss of about 20;
# asserted at 1e-5 on weights, 1e-5 plus 1e-5 relative on losses
TOLERANCE = 1e-5


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


def on_two_processes(model_dir, split_files, out: Path, options: dict, check: bool = True, processes: int = 2):
    """Run tests/ddp_worker.py under torchrun; each process's record (digest, draws, logits)."""
    out.parent.mkdir(exist_ok=True)
    result = subprocess.run([*TORCHRUN[:-1], str(processes), str(Path(__file__).parent / "ddp_worker.py"),
                             str(model_dir), *map(str, split_files), str(out), json.dumps(options)],
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result, [json.loads((out.parent / f"rank-{rank}.json").read_text()) if check else None
                    for rank in range(processes)]


def assert_one_model_saved(out: Path, ranks: list[dict]) -> None:
    """The two processes drew different examples, trained identical weights, and the folder holds them."""
    from lume.models import load_model

    assert ranks[0]["draws"] != ranks[1]["draws"]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    saved = load_model(out, dtype="float32", device="cpu").model
    if not (out / "adapter").is_dir():  # LoRA's folder holds the merged weights instead
        assert digest(saved.state_dict()) == ranks[0]["digest"]
    with torch.no_grad():
        logits = saved(input_ids=torch.tensor(PROBE_IDS)).logits
    torch.testing.assert_close(logits, torch.tensor(ranks[0]["logits"]), rtol=1e-5, atol=1e-5)


UNLEARNING_CASES = {
    "npo+gd": {"method": "npo+gd", "device": "cpu"},
    "npo+gd-lora": {"method": "npo+gd", "lora_rank": 4},
    "kl": {"method": "kl"},
    "kl-lora": {"method": "kl", "lora_rank": 4},
    "rmu": {"method": "rmu", "method_settings": {"layer": 1}},
    "rmu-lora": {"method": "rmu", "method_settings": {"layer": 1}, "lora_rank": 4},
    "npo+gd-fsdp": {"method": "npo+gd", "fsdp": True},
    "kl-fsdp": {"method": "kl", "fsdp": True},
    "rmu-fsdp": {"method": "rmu", "method_settings": {"layer": 1}, "fsdp": True},
}


@pytest.mark.slow
@pytest.mark.parametrize("case", UNLEARNING_CASES)
def test_two_processes_unlearn_one_model_and_save_it(tmp_path, tiny_model_dir, split_files, case):
    """Without `--device cpu` too: on a machine without a GPU, torchrun's processes are one run."""
    from lume.models import load_model

    out = tmp_path / "run" / "out"
    _, ranks = on_two_processes(tiny_model_dir, split_files, out, {"stage": "unlearn", **UNLEARNING_CASES[case]})
    assert_one_model_saved(out, ranks)
    before = load_model(tiny_model_dir, dtype="float32", device="cpu").model
    assert digest(before.state_dict()) != digest(load_model(out, dtype="float32", device="cpu").model.state_dict())
    report = json.loads((out / "lume_unlearn.json").read_text())
    assert report["steps"] == 3 and report["num_processes"] == 2
    assert report["examples_per_step"] == 4 and report["micro_batches_per_process"] == 1  # 2 micro-batches of 2
    assert report["distributed_type"] == ("FSDP" if "fsdp" in case else "MULTI_CPU")


INVARIANCE_CASES = {
    "npo+gd": {"method": "npo+gd"},
    "kl": {"method": "kl"},
    "rmu": {"method": "rmu", "method_settings": {"layer": 1}},
    "npo+gd-fsdp": {"method": "npo+gd", "fsdp": True},
    "kl-fsdp": {"method": "kl", "fsdp": True},
    "gd-epochs": {"method": "gd", "schedule": {"kind": "epochs"}},
    "gd-chunks": {"method": "gd", "schedule": {"kind": "chunks", "chunk_size": 4, "retain_per_forget": 2}},
    "npo+gd-four-micro-batches": {"method": "npo+gd", "accumulation": 4},
}


def _losses(out: Path) -> list[float]:
    return [row["loss"] for row in json.loads((out / "lume_unlearn.json").read_text())["losses"]]


@pytest.mark.slow
@pytest.mark.parametrize("case", INVARIANCE_CASES)
def test_one_process_and_two_train_the_same_model(tmp_path, tiny_model_dir, split_files, case):
    """The same settings on 1 and on 2 processes (DDP or FSDP2): the same micro-batches, per-step
    losses and final weights within float32 round-off."""
    from lume.models import load_model

    options = {"stage": "unlearn", "mixed_precision": "no", **INVARIANCE_CASES[case]}
    one, two = tmp_path / "one" / "out", tmp_path / "two" / "out"
    _, (alone,) = on_two_processes(tiny_model_dir, split_files, one, {**options, "fsdp": False}, processes=1)
    _, shared = on_two_processes(tiny_model_dir, split_files, two, options)
    assert sorted(alone["draws"]) == sorted(shared[0]["draws"] + shared[1]["draws"])  # the same micro-batches
    assert len(_losses(one)) == len(_losses(two)) >= 2
    torch.testing.assert_close(_losses(two), _losses(one), rtol=TOLERANCE, atol=TOLERANCE)
    weights = [load_model(folder, dtype="float32", device="cpu").model.state_dict() for folder in (one, two)]
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=TOLERANCE, msg=name)


@pytest.mark.slow
def test_a_run_killed_on_one_process_resumes_on_two_to_the_same_model(tmp_path, tiny_model_dir, split_files):
    from lume.models import load_model

    options = {"stage": "unlearn", "method": "npo+gd", "steps": 4, "save_every": 2, "mixed_precision": "no"}
    whole, cut = tmp_path / "whole" / "out", tmp_path / "cut" / "out"
    on_two_processes(tiny_model_dir, split_files, whole, options, processes=1)
    killed, _ = on_two_processes(tiny_model_dir, split_files, cut, {**options, "crash_after": 2}, check=False,
                                 processes=1)
    assert killed.returncode != 0 and not (cut / "lume_unlearn.json").exists()
    result, _ = on_two_processes(tiny_model_dir, split_files, cut, options)
    assert "resuming from step 2" in result.stdout + result.stderr
    torch.testing.assert_close(_losses(cut), _losses(whole), rtol=TOLERANCE, atol=TOLERANCE)
    weights = [load_model(folder, dtype="float32", device="cpu").model.state_dict() for folder in (whole, cut)]
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=TOLERANCE, msg=name)


@pytest.mark.slow
def test_one_process_and_two_memorize_the_same_target(tmp_path, tiny_model_dir, split_files, data_dir):
    from lume.models import load_model

    options = {"stage": "memorize", "data_dir": str(data_dir), "mixed_precision": "no"}
    one, two = tmp_path / "one" / "target", tmp_path / "two" / "target"
    _, (alone,) = on_two_processes(tiny_model_dir, split_files, one, options, processes=1)
    _, shared = on_two_processes(tiny_model_dir, split_files, two, options)
    assert sorted(map(sorted, alone["draws"])) == sorted(map(sorted, shared[0]["draws"] + shared[1]["draws"]))
    weights = [load_model(folder, dtype="float32", device="cpu").model.state_dict() for folder in (one, two)]
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=TOLERANCE, msg=name)


def test_gradient_accumulation_equals_one_micro_batch_of_the_whole_step_for_a_per_example_loss(
        tmp_path, tiny_model_dir, split_files, fresh_accelerate_state):
    """Two micro-batches of 2 against one of 4 (one process): a loss that averages per example
    (gd with average examples) gives the same step whatever the micro-batches."""
    from lume.models import load_model
    from lume.stages.unlearning import ScheduleSettings, UnlearnConfig, read_split, unlearn
    from lume.training import TrainingSettings

    forget, retain = (read_split(path, split) for path, split in zip(split_files, ("forget", "retain")))
    results = []
    for batch, accumulation in ((2, 2), (4, 1)):
        training = TrainingSettings(batch_size=batch, gradient_accumulation=accumulation, learning_rate=1e-3,
                                    mixed_precision="no")
        config = UnlearnConfig(method="gd", method_settings={"average": "examples"}, steps=3, progress=False,
                               schedule=ScheduleSettings(kind="epochs"), training=training)
        out = tmp_path / f"{batch}x{accumulation}"
        unlearn(tiny_model_dir, out, config, forget=forget, retain=retain)
        results.append((_losses(out), load_model(out, dtype="float32", device="cpu").model.state_dict()))
    (losses_a, weights_a), (losses_b, weights_b) = results
    torch.testing.assert_close(losses_a, losses_b, rtol=TOLERANCE, atol=TOLERANCE)
    for name, value in weights_a.items():
        torch.testing.assert_close(weights_b[name], value, rtol=0, atol=TOLERANCE, msg=name)


@pytest.mark.slow
def test_lora_on_sharded_weights_is_refused_in_one_line(tmp_path, tiny_model_dir, split_files):
    result, _ = on_two_processes(tiny_model_dir, split_files, tmp_path / "run" / "out",
                                 {"stage": "unlearn", "method": "npo", "lora_rank": 4, "fsdp": True}, check=False)
    assert result.returncode != 0 and "LoRA with sharded weights (FSDP) is not supported" in result.stderr


def test_processes_not_set_up_as_one_run_stop_with_a_clear_error(monkeypatch):
    """Two processes started, one set up (here: accelerate's state made before the launch was
    seen): each would train its own copy, so lume stops."""
    from accelerate.state import AcceleratorState

    from lume.errors import LumeError
    from lume.training import make_accelerator

    AcceleratorState._reset_state(reset_partial_state=True)
    make_accelerator("no")
    monkeypatch.setenv("WORLD_SIZE", "2")
    try:
        with pytest.raises(LumeError, match="2 processes were started but accelerate set up 1 .NO."):
            make_accelerator("no", gradient_accumulation=2)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.slow
def test_two_processes_memorize_one_target(tmp_path, tiny_model_dir, split_files, data_dir):
    out = tmp_path / "run" / "target"
    _, ranks = on_two_processes(tiny_model_dir, split_files, out, {"stage": "memorize", "data_dir": str(data_dir)})
    assert_one_model_saved(out, ranks)
    manifest = json.loads((out / "lume_target.json").read_text())
    assert manifest["result"]["num_processes"] == 2 and manifest["result"]["distributed_type"] == "MULTI_CPU"


@pytest.mark.slow
def test_two_processes_resume_where_they_were_killed(tmp_path, tiny_model_dir, split_files):
    """Killed after step 2's checkpoint, rerun: the same model as a run never interrupted."""
    options = {"stage": "unlearn", "method": "npo+gd", "steps": 4, "save_every": 2}
    _, whole = on_two_processes(tiny_model_dir, split_files, tmp_path / "whole" / "out", options)
    cut = tmp_path / "cut" / "out"
    killed, _ = on_two_processes(tiny_model_dir, split_files, cut, {**options, "crash_after": 2}, check=False)
    assert killed.returncode != 0 and not (cut / "lume_unlearn.json").exists()
    result, resumed = on_two_processes(tiny_model_dir, split_files, cut, options)
    assert "resuming from step 2" in result.stdout + result.stderr
    assert resumed[0]["digest"] == resumed[1]["digest"] == whole[0]["digest"]
    assert_one_model_saved(cut, resumed)


@pytest.mark.slow
def test_the_cli_under_torchrun_reports_once(tmp_path, tiny_model_dir, split_files):
    forget, retain = split_files
    result = subprocess.run([*TORCHRUN, "-m", "lume", "unlearn", str(tiny_model_dir),
                             str(retain), str(forget), str(tmp_path / "out"), "--steps", "2", "--batch-size", "2",
                             "--gradient-accumulation", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("unlearned model written") == 1, result.stderr  # only the main process logs
    assert json.loads((tmp_path / "out" / "lume_unlearn.json").read_text())["num_processes"] == 2


@pytest.mark.slow
def test_evaluation_on_two_processes_shares_the_work_and_equals_one(tmp_path, tiny_model_dir, data_dir):
    from lume.stages.evaluation import EvalConfig, evaluate
    from tests.test_mmlu import make_mmlu

    mmlu = make_mmlu(tmp_path / "mmlu")
    flags = {"docs_per_task": 2, "max_new_tokens": 8, "mia_set": "validation", "mmlu_dir": str(mmlu),
             "bootstrap_resamples": 50}
    alone = evaluate(
        tiny_model_dir, tmp_path / "one", EvalConfig(data_dir=str(data_dir), progress=False, **flags)).to_json()
    command = [*TORCHRUN, "-m", "lume", "evaluate", str(tiny_model_dir),
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


@pytest.mark.parametrize("name, distributed_type", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("zero3", "DEEPSPEED")])
def test_shipped_accelerate_configs_set_up_what_they_say(name, distributed_type):
    """The files load with accelerate's own reader; FSDP is version 2 with a full state dict on
    save, ZeRO-3 saves gathered 16-bit weights (what `get_state_dict` needs)."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(Path(__file__).parent.parent / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.value == distributed_type and config.num_processes == 8
    if name == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    if name == "zero3":
        assert config.deepspeed_config["zero_stage"] == 3 and config.deepspeed_config["zero3_save_16bit_model"]
