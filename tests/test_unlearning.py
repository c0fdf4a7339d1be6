import dataclasses
import json
import math
import subprocess
import sys

import pytest
import torch

from lume.errors import LumeError
from lume.inference.batching import IGNORE
from lume.training import Example, TrainingSettings, collate
from lume.stages.unlearning import UnlearnConfig, build_method, unlearn
from lume.stages.unlearning.methods import METHODS, Method, register
from lume.stages.unlearning.methods.npo import npo_loss
from tests.conftest import first_documents_records

FAST = TrainingSettings(batch_size=2, learning_rate=1e-3)


def test_reference_quantities_share_the_policys_precision(tmp_path, tiny_model_dir, sets):
    """Under the training precision (bf16 autocast where native), at step 0 the policy is the
    reference: NPO's log-ratio and the KL are 0."""
    forget, retain = sets
    config = UnlearnConfig(method="npo+kl", steps=1, training=TrainingSettings(batch_size=1), progress=False)
    report = unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget[:1], retain=retain[:1]).to_json()
    first = report["losses"][0]
    assert first["npo"] == pytest.approx(2 / 0.1 * math.log(2), abs=1e-6)
    assert first["retain_kl"] == 0.0


def test_npo_loss_off_the_reference_point():
    value = npo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), beta=0.5)
    assert value.item() == pytest.approx(4 * math.log(1 + math.exp(0.5)))
    # lowering the forget likelihood lowers the loss, and it is bounded below by 0
    assert npo_loss(torch.tensor([-50.0]), torch.tensor([-2.0]), 0.1).item() < value.item()
    assert npo_loss(torch.tensor([-500.0]), torch.tensor([-2.0]), 0.1).item() >= 0


def test_answers_sum_only_each_rows_labelled_tokens():
    from lume.inference.answers import Answers

    found = Answers(torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]])), torch.tensor([1, 0, 1]),
                    torch.tensor([0, 0, 2]), 3)
    total = found.per_row(found.log_likelihoods())
    assert total.tolist() == pytest.approx([math.log(0.5) + math.log(0.25), 0.0, math.log(0.1)])
    assert found.counts().tolist() == [2, 0, 1] and found.rank_in_row().tolist() == [0, 1, 0]


@pytest.mark.parametrize("packed", [True, False])
def test_answer_logits_match_one_padded_forward(tiny_model, packed, monkeypatch):
    """Rows of very different lengths, from two batches, in one packed forward (or, for a model
    that does not keep packed rows apart, one forward per length group): every labelled
    position's logits, the NLL (as transformers computes it) and the gradients are those of
    one padded forward per batch."""
    from lume.inference import answers as answers_module
    from lume.inference.answers import answer_logits
    from lume.stages.unlearning.methods.base import nll, prime
    from lume.training import Example

    monkeypatch.setattr(answers_module, "packs_exactly", lambda model: packed)
    monkeypatch.setattr(answers_module, "PACK_TOKENS", 40)  # two packed sequences, one with padding
    examples = [Example(list(range(3, 3 + n)), [IGNORE] * (n // 2) + list(range(3 + n // 2, 3 + n)), "p")
                for n in (30, 5, 28, 4, 12)]
    first, second = collate(examples[:3], 0), collate(examples[3:], 0)
    model = tiny_model.float()
    for batch, found in zip((first, second), answer_logits(model, [first, second])):
        full = model(**batch)
        labelled = batch["labels"][:, 1:] != IGNORE
        assert torch.allclose(found.logits, full.logits[:, :-1][labelled], atol=1e-4)
        assert found.targets.tolist() == batch["labels"][:, 1:][labelled].tolist()
        model.zero_grad()
        prime(model, [first, second])
        together = nll(model, batch)
        together.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        full.loss.backward()
        assert together.item() == pytest.approx(full.loss.item(), abs=1e-5)
        assert all(torch.allclose(a, p.grad, atol=1e-4) for a, p in zip(grads, model.parameters()))
        model.zero_grad()


def test_the_packed_output_layer_reads_only_labelled_positions(tiny_model, monkeypatch):
    """Two packed sequences whose answers sit at different positions: the output layer (the
    vocabulary-sized matmul) sees one hidden state per labelled token, not every sequence's
    positions where any sequence has an answer."""
    from lume.inference import answers as answers_module

    monkeypatch.setattr(answers_module, "PACK_TOKENS", 40)
    examples = [Example(list(range(3, 3 + n)), [IGNORE] * (n - answer) + list(range(3 + n - answer, 3 + n)), "p")
                for n, answer in ((30, 4), (20, 15), (8, 2))]
    batch = collate(examples, 0)
    read = []
    hook = tiny_model.get_output_embeddings().register_forward_hook(lambda _m, inputs, _o: read.append(inputs[0]))
    try:
        (found,) = answers_module.answer_logits(tiny_model, [batch])
    finally:
        hook.remove()
    labelled = int((batch["labels"][:, 1:] != IGNORE).sum())
    assert found.logits.shape[0] == labelled == 4 + 15 + 2
    assert read[-1].shape[:-1].numel() == labelled


def test_a_model_that_keeps_packed_rows_apart_is_packed(tiny_model):
    from lume.inference.answers import packs_exactly

    assert packs_exactly(tiny_model)


class _OlderLogitsToKeep(torch.nn.Module):
    """A causal LM that reads a `logits_to_keep` tensor as positions kept in every row (as
    transformers did before it took packed masks), or that ignores it."""

    def __init__(self, model, ignores: bool):
        super().__init__()
        self.model, self.ignores = model, ignores

    def forward(self, input_ids, logits_to_keep=0, **kwargs):
        output = self.model(input_ids=input_ids, **kwargs)
        if isinstance(logits_to_keep, torch.Tensor) and not self.ignores:
            output.logits = output.logits[:, logits_to_keep, :]
        return output


@pytest.mark.parametrize("ignores", [False, True])
def test_a_model_that_cannot_keep_packed_positions_runs_row_groups(tiny_model, ignores):
    """Its answer logits are still each row's own, from a forward per row group."""
    from lume.inference.answers import answer_logits, packs_exactly

    model = _OlderLogitsToKeep(tiny_model.float(), ignores)
    assert not packs_exactly(model)
    batch = collate([Example(list(range(3, 3 + n)), [IGNORE] * 2 + list(range(5, 3 + n)), "p") for n in (9, 4)], 0)
    (found,) = answer_logits(model, [batch])
    full = tiny_model(**batch).logits[:, :-1][batch["labels"][:, 1:] != IGNORE]
    assert torch.allclose(found.logits, full, atol=1e-4)


def test_sequential_chunks_cover_the_forget_set_in_order():
    method = build_method("sequential-gd", {"chunks": 3})
    pools = [method.forget_pool(step, 9, 10) for step in range(9)]
    assert pools[0] == range(0, 3) and pools[4] == range(3, 6) and pools[8] == range(6, 10)


def test_unknown_method_and_bad_setting_are_clear():
    with pytest.raises(LumeError, match="unknown method 'nope'"):
        build_method("nope")
    with pytest.raises(LumeError, match=r"method 'npo': field 'method_settings.betta': unknown field"):
        build_method("npo", {"betta": 1})
    with pytest.raises(LumeError, match=r"method_settings.beta': expected a number, got 'abc'"):
        build_method("npo", {"beta": "abc"})


@pytest.fixture(scope="module")
def sets(data_dir):
    return first_documents_records(data_dir, 3)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_runs_end_to_end_on_a_tiny_model(tmp_path, tiny_model_dir, sets, name):
    from lume.models import load_model

    forget, retain = sets
    settings = {"layer": 1} if name == "rmu" else {}
    report = unlearn(tiny_model_dir, tmp_path / name, UnlearnConfig(method=name, method_settings=settings, steps=2,
                                                                    training=FAST, progress=False),
                     forget=forget, retain=retain).to_json()
    assert report["steps"] == 2 and len(report["losses"]) == 2
    saved = json.loads((tmp_path / name / "lume_unlearn.json").read_text())
    assert saved["method"] == name and saved["forget"]["records"] == len(forget)
    before = load_model(tiny_model_dir, device="cpu").model.state_dict()
    after = load_model(tmp_path / name, device="cpu").model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_rmu_names_a_layer_the_model_does_not_have(tmp_path, tiny_model_dir, sets):
    forget, retain = sets
    with pytest.raises(LumeError, match="rmu: layer 7 does not exist"):
        unlearn(tiny_model_dir, tmp_path / "rmu", UnlearnConfig(method="rmu", steps=1, progress=False),
                forget=forget, retain=retain)


def test_rmu_changes_only_the_mlps_of_its_layers(tmp_path, tiny_model_dir, sets):
    from lume.models import load_model

    forget, retain = sets
    unlearn(tiny_model_dir, tmp_path / "rmu", UnlearnConfig(method="rmu", method_settings={"layer": 1}, steps=2,
                                                          training=FAST, progress=False),
            forget=forget, retain=retain)
    before = load_model(tiny_model_dir, device="cpu").model.state_dict()
    after = load_model(tmp_path / "rmu", device="cpu").model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".mlp." in k for k in changed)


def test_lora_run_saves_an_adapter_and_merge_combines_two(tmp_path, tiny_model_dir, sets):
    from lume.models import load_model
    from lume.stages.unlearning.merge import MergeConfig, merge_adapters

    forget, retain = sets
    for name, lr in (("a", 1e-2), ("b", 1e-3)):
        unlearn(tiny_model_dir, tmp_path / name, UnlearnConfig(method="npo+kl", steps=2, progress=False,
                                                               training=TrainingSettings(batch_size=2, lora_rank=4,
                                                                                         learning_rate=lr)),
                forget=forget, retain=retain)
        assert (tmp_path / name / "adapter" / "adapter_config.json").is_file()
    for combination in ("ties", "linear"):
        merged = merge_adapters(tiny_model_dir, [tmp_path / "a" / "adapter", tmp_path / "b" / "adapter"],
                                tmp_path / f"merged-{combination}", MergeConfig(combination=combination))
        weights = load_model(merged, device="cpu").model.state_dict()
        base = load_model(tiny_model_dir, device="cpu").model.state_dict()
        assert any(not torch.equal(weights[k], base[k]) for k in base)
        record = json.loads((merged / "lume_merge.json").read_text())  # written last: the merge finished
        assert record["combination"] == {"ties": "ties", "linear": "linear"}[combination]
        assert record["weights"] == [0.5, 0.5] and not (merged / "lume_unfinished.json").exists()


def test_a_lora_run_is_the_same_whatever_random_state_it_starts_from(tmp_path, tiny_model_dir, sets):
    """The adapters are drawn after the run's seed is set: two processes (here, two global random
    states) train the same adapter."""
    from safetensors.torch import load_file

    forget, retain = sets
    config = UnlearnConfig(method="npo+kl+gd", steps=2, progress=False,
                           training=TrainingSettings(batch_size=2, lora_rank=4, learning_rate=1e-3))
    runs = []
    for number in (1, 2):
        torch.manual_seed(number)
        report = unlearn(tiny_model_dir, tmp_path / str(number), config, forget=forget, retain=retain).to_json()
        runs.append((report["losses"], load_file(tmp_path / str(number) / "adapter" / "adapter_model.safetensors")))
    (losses_1, adapter_1), (losses_2, adapter_2) = runs
    assert [row["loss"] for row in losses_1] == [row["loss"] for row in losses_2]
    assert adapter_1.keys() == adapter_2.keys() and all(torch.equal(adapter_1[k], adapter_2[k]) for k in adapter_1)


def test_a_nan_loss_stops_cleanly_and_keeps_the_last_checkpoint(tmp_path, tiny_model_dir, sets):
    @register
    class Explodes(Method):
        name = "test-explodes"

        def loss(self, context, forget, retain):
            value = context.model(input_ids=forget["input_ids"], labels=forget["labels"]).loss
            step = context.precomputed.setdefault("step", [0])
            step[0] += 1
            return (value * float("nan") if step[0] > 2 else value), {}

    forget, retain = sets
    try:
        with pytest.raises(LumeError, match="loss became nan at step 3"):
            config = UnlearnConfig(method="test-explodes", steps=5, progress=False,
                                   training=TrainingSettings(batch_size=2, save_every=1))
            unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain)
    finally:
        METHODS.pop("test-explodes")
    from lume.training import saved_checkpoints

    assert [step for step, _, _ in saved_checkpoints(tmp_path / "out" / "checkpoints")] == [2]
    assert not (tmp_path / "out" / "lume_unlearn.json").exists()


def test_forget_and_retain_draws_are_independent_per_micro_batch_and_the_same_on_any_process():
    from lume.stages.unlearning.schedule import ScheduleSettings, plan
    from lume.training.sampling import process_micro_batches

    draws = plan(ScheduleSettings(), None, 100, 100, 8, 2)
    first = draws.indices(0, 5, range(100))
    assert first == draws.indices(0, 5, range(100))
    assert first != draws.indices(0, 6, range(100)) and first != draws.indices(1, 5, range(100))
    assert first[0] != first[1]
    assert all(i in range(40, 50) for i in draws.indices(0, 5, range(40, 50))[0])
    # step 2 of 4 micro-batches: one process trains 8-11, two share them, four take one each
    assert list(process_micro_batches(2, 4, 1, 0)) == [8, 9, 10, 11]
    assert [list(process_micro_batches(2, 4, 2, p)) for p in (0, 1)] == [[8, 9], [10, 11]]
    assert [list(process_micro_batches(2, 4, 4, p)) for p in range(4)] == [[8], [9], [10], [11]]


def test_a_step_that_processes_cannot_share_equally_is_refused_in_one_line():
    from lume.training.sampling import process_share

    assert process_share(4, 2) == 2 and process_share(3, 1) == 3
    with pytest.raises(LumeError, match="gradient_accumulation 3: a step of 3 micro-batch.es. cannot be shared "
                                        "equally by 2 processes; set it to a multiple of 2"):
        process_share(3, 2)


@pytest.mark.slow
def test_semeval_positional_interface(tmp_path, tiny_model_dir, data_dir):
    import pyarrow.parquet as pq

    for split in ("retain", "forget"):
        folder = tmp_path / split
        folder.mkdir()
        table = pq.read_table(data_dir / "semeval25" / f"{split}_validation.parquet").slice(0, 12)
        pq.write_table(table, folder / f"{split}.parquet")
    out = tmp_path / "unlearned"
    result = subprocess.run([sys.executable, "-m", "lume", "unlearn", str(tiny_model_dir), str(tmp_path / "retain"),
                             str(tmp_path / "forget"), str(out), "--method", "npo+gd", "--steps", "2",
                             "--set", "beta=0.2", "--device", "cpu"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "lume_unlearn.json").read_text())
    assert report["method_settings"]["beta"] == 0.2 and report["forget"]["records"] == 12
    assert (out / "model.safetensors").is_file()


def test_reference_quantities_are_computed_for_the_forget_examples_the_run_draws_only(tiny_model, tokenizer):
    """NPO's reference log-likelihoods: a short run on a large forget set needs a few of them."""
    from lume.stages.unlearning.methods import Context
    from lume.stages.unlearning.schedule import ScheduleSettings, plan
    from lume.stages.unlearning.unlearner import drawn_forget_examples
    from lume.training import TrainingSettings, prompt_answer_example

    examples = [prompt_answer_example(tokenizer, f"Question {i}?", f"Answer {i}") for i in range(40)]
    training = TrainingSettings(batch_size=2, seed=3)
    schedule = plan(ScheduleSettings(), 3, len(examples), 10, 2, 1)
    method = build_method("npo")
    one_process = type("Accelerator", (), {"num_processes": 1, "process_index": 0})()
    drawn = drawn_forget_examples(schedule, method, training, one_process, len(examples))
    used = {i for step in range(3) for i in schedule.indices(3, step, range(40))[0]}
    assert drawn == sorted(used) and len(drawn) <= 6
    context = Context(tiny_model.float(), tokenizer, examples, lambda ex: collate(ex, tokenizer.pad_token_id))
    context.drawn = drawn
    values = context.forget_log_likelihoods()
    batches = {i // context.batch_size for i in drawn}  # the whole set's batches that hold a drawn example
    assert torch.isfinite(values[drawn]).all() and torch.isnan(values).sum() == 40 - context.batch_size * len(batches)
    context.drawn = None
    assert torch.equal(context.forget_log_likelihoods()[drawn], values[drawn])  # whatever else is drawn


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_rmu_on_a_layer_the_model_lacks_is_one_error_with_or_without_lora(tmp_path, tiny_model_dir, sets, lora_rank):
    """With LoRA, RMU's layer was never checked (an IndexError once its hooks ran); on a layer it
    has, the run trains its adapters."""
    forget, retain = sets
    training = TrainingSettings(batch_size=2, lora_rank=lora_rank, learning_rate=1e-3)
    config = UnlearnConfig(method="rmu", steps=1, progress=False, method_settings={"layer": 7}, training=training)
    with pytest.raises(LumeError, match="rmu: layer 7 does not exist \\(the model has 2 layers\\)"):
        unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain)
    assert not (tmp_path / "out").exists()
    config = UnlearnConfig(method="rmu", steps=1, progress=False, method_settings={"layer": 1}, training=training)
    unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain)
    assert (tmp_path / "out" / ("adapter/adapter_config.json" if lora_rank else "model.safetensors")).is_file()


def test_merging_adapters_onto_another_base_is_one_line(capsys, tmp_path, tiny_model_dir, tokenizer, sets):
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.conftest import run_cli

    forget, retain = sets
    for name in ("a", "b"):
        unlearn(tiny_model_dir, tmp_path / name, UnlearnConfig(method="gd", steps=1, progress=False, training=
                TrainingSettings(batch_size=2, lora_rank=4, learning_rate=1e-3)), forget=forget, retain=retain)
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.hidden_size, config.intermediate_size = config.hidden_size * 2, config.intermediate_size * 2
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "other")
    tokenizer.save_pretrained(tmp_path / "other")
    code, err = run_cli(capsys, "merge", tmp_path / "other", tmp_path / "a" / "adapter", tmp_path / "b" / "adapter",
                        "--out", tmp_path / "merged")
    # torch's error listed every mismatched tensor (91 lines); a library's logging may still write to a
    # stream an earlier test closed, so its lines are not counted here
    assert code == 2 and "size mismatch" not in err and len([line for line in err.splitlines() if "lume:" in line]) == 1
    assert "its weights do not fit the base model" in err and str(tmp_path / "a" / "adapter") in err


def test_weights_held_in_bf16_lose_an_update_below_their_spacing_which_float32_keeps(tmp_path, tiny_model_dir, sets,
                                                                                   fresh_accelerate_state):
    """dtype bfloat16 trains without a float32 copy (as AILS-NTUA and SHA256 did): AdamW's first
    steps move each weight by about the learning rate, 1e-6 here, under half the bf16 spacing of
    any weight above 0.01 in size (3e-5 or more), so those weights stay as they were; float32 keeps them."""
    from safetensors.torch import load_file

    forget, retain = sets
    before = load_file(tiny_model_dir / "model.safetensors")
    name = next(k for k in before if k.endswith("mlp.down_proj.weight"))
    large = before[name].abs() > 0.01

    def trained(dtype):
        config = UnlearnConfig(method="gd", steps=2, dtype=dtype, progress=False,
                               training=TrainingSettings(batch_size=1, learning_rate=1e-6, mixed_precision="no"))
        unlearn(tiny_model_dir, tmp_path / str(dtype), config, forget=forget[:1], retain=retain[:1])
        return load_file(tmp_path / str(dtype) / "model.safetensors")[name]

    held_in_bf16, held_in_float32 = trained("bfloat16"), trained(None)
    assert held_in_bf16.dtype == torch.bfloat16 and large.sum() > 100
    assert torch.equal(held_in_bf16[large], before[name].bfloat16()[large])
    assert (held_in_float32[large] != before[name][large]).float().mean() > 0.9


def test_select_loss_keeps_the_step_of_lowest_validation_loss(tmp_path, tiny_model_dir, sets, monkeypatch):
    """SHA256's checkpoint choice: the method's loss on validation rows drawn from the training
    rows, every `eval_every` steps; the lowest step's weights are the model saved."""
    from safetensors.torch import load_file

    forget, retain = sets
    by_step = {0: 5.0, 1: 1.0, 2: 3.0}  # the loss after steps 1, 2, 3 (context.step is the last step taken)
    monkeypatch.setattr(Method, "validation_loss", lambda self, context, f, r: torch.tensor(by_step[context.step]))
    from lume.stages.unlearning.selection import ProbeSettings

    probes = ProbeSettings(docs_per_task=0, non_members=0, mmlu_questions=0, validation_rows=2)
    config = UnlearnConfig(method="gd", steps=3, eval_every=1, select="loss", probes=probes, training=FAST,
                           progress=False)
    report = unlearn(tiny_model_dir, tmp_path / "loss", config, forget=forget, retain=retain)
    assert [row.validation_loss for row in report.probes] == [None, 5.0, 1.0, 3.0]
    assert report.selection.step == 2 and "validation" in report.selection.criterion
    two_steps = UnlearnConfig(method="gd", steps=2, training=FAST, progress=False)
    unlearn(tiny_model_dir, tmp_path / "two", two_steps, forget=forget, retain=retain)
    chosen, direct = (load_file(tmp_path / name / "model.safetensors") for name in ("loss", "two"))
    assert all(torch.equal(chosen[name], direct[name]) for name in direct)


def test_validation_rows_are_drawn_per_task_from_both_sets():
    from types import SimpleNamespace

    from lume.stages.unlearning.selection import ProbeSettings, validation_indices

    rows = lambda split: [SimpleNamespace(id=f"{split}{t}{i}", task=t) for t in ("Task1", "Task2") for i in range(5)]  # noqa: E731
    forget, retain = validation_indices(rows("f"), rows("r"), ProbeSettings(validation_rows=4))
    assert len(forget) + len(retain) == 8 and forget == sorted(set(forget))
    assert validation_indices(rows("f"), rows("r"), ProbeSettings(validation_rows=4)) == (forget, retain)
    with pytest.raises(LumeError, match="select 'loss' measures .*set probes.validation_rows"):
        UnlearnConfig(eval_every=1, select="loss")


def test_a_time_budget_stops_at_the_end_of_the_epoch_before_the_one_that_would_overrun():
    from lume.stages.unlearning.schedule import EpochBudget, ScheduleSettings, plan

    schedule = plan(ScheduleSettings(kind="epochs", epochs=100, max_seconds=25), None, 10, 10, 2, 1)
    budget = EpochBudget(schedule)  # 5 steps an epoch
    assert budget(4, 8.0) is None and budget(5, 10.0) is None  # one epoch of 10 s; the next ends by 20 s
    stopped = budget(10, 21.0)  # the longest epoch so far 11 s: a third would end at 32 s
    assert stopped == "time budget: 2 epoch(s) in 21 s of training; one more (about 11 s) would end past 25 s"
    resumed = EpochBudget(schedule)  # a resumed run: its first epochs count at their mean length
    assert resumed(15, 22.0).startswith("time budget: 3 epoch(s)") and resumed.longest == pytest.approx(22.0 / 3)
    with pytest.raises(LumeError, match="max_seconds stops at the end of an epoch: it needs kind epochs"):
        ScheduleSettings(kind="draws", max_seconds=10)


def test_a_run_over_its_time_budget_keeps_its_first_finished_epoch(tmp_path, tiny_model_dir, sets):
    forget, retain = sets
    from lume.stages.unlearning.schedule import ScheduleSettings

    config = UnlearnConfig(method="gd", schedule=ScheduleSettings(kind="epochs", epochs=5, max_seconds=1e-6),
                           training=FAST, progress=False)
    report = unlearn(tiny_model_dir, tmp_path / "out", config, forget=forget, retain=retain)
    assert report.steps == math.ceil(len(forget) / FAST.batch_size)  # one epoch, then stopped
    assert report.stopped.startswith("time budget: 1 epoch(s)")


def test_stop_at_ends_a_run_at_that_step_of_the_longer_schedule(tmp_path, tiny_model_dir, sets, fresh_accelerate_state):
    """A sweep's kept step without probing: the first steps of the 4-step schedule (its linear
    decay included), not a 2-step schedule."""
    from lume.models import load_model

    forget, retain = sets
    config = UnlearnConfig(method="gd", steps=4, progress=False, device="cpu",
                           training=TrainingSettings(batch_size=1, learning_rate=1e-3, scheduler="linear",
                                                     mixed_precision="no"))
    runs = {name: unlearn(tiny_model_dir, tmp_path / name, changed, forget=forget, retain=retain)
            for name, changed in (("whole", config), ("stopped", dataclasses.replace(config, stop_at=2)),
                                  ("short", dataclasses.replace(config, steps=2)),
                                  ("fraction", dataclasses.replace(config, stop_fraction=0.6)))}  # 2.4: step 2
    assert runs["stopped"].steps == 2 and runs["stopped"].stopped == "stop_at: step 2" == runs["fraction"].stopped
    assert [r["loss"] for r in runs["stopped"].losses] == [r["loss"] for r in runs["whole"].losses[:2]]
    assert [r["loss"] for r in runs["fraction"].losses] == [r["loss"] for r in runs["stopped"].losses]
    with pytest.raises(LumeError, match="stop_at and stop_fraction both say where training ends"):
        dataclasses.replace(config, stop_at=2, stop_fraction=0.5)
    with pytest.raises(LumeError, match="stop_fraction"):
        dataclasses.replace(config, stop_fraction=1.5)
    weights = {name: next(iter(load_model(tmp_path / name, device="cpu").model.parameters())).detach()
               for name in ("stopped", "short")}
    assert not torch.equal(weights["stopped"], weights["short"])  # a 2-step schedule decays faster
