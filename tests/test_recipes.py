"""Recipes: the SemEval-2025 systems configured as their papers (and the authors' code) say,
the parts they are made of (which weights train, data chunks, fresh optimisers per chunk), and
a behaviour case each on a tiny model fitted to a few rows."""

import json
from dataclasses import replace

import pytest
import torch

from lume.errors import LumeError
from lume.stages.unlearning import UnlearnConfig
from lume.stages.unlearning.recipes import RECIPES, target_kind
from lume.stages.unlearning.recipes.run import unlearn_with_recipe
from lume.stages.unlearning.schedule import ScheduleSettings, plan
from lume.training import TrainingSettings, scoped

from .conftest import make_tiny_model
from .test_method_behaviour import nlls
from tests.conftest import model_entry

LAST_EIGHT = [-8, -7, -6, -5, -4, -3, -2, -1]


def configs(name: str, kind: str) -> dict[str, UnlearnConfig]:
    return RECIPES[name].configs(kind)


@pytest.mark.parametrize("kind", ["olmo-1b", "olmo-7b"])
def test_ails_ntua_is_sequential_gradient_difference_on_chunks_in_the_last_eight_layers(kind):
    (config,) = configs("ails-ntua", kind).values()
    assert (config.method, config.method_settings) == ("gd", {"alpha": 0.5, "average": "examples"})
    assert (config.schedule.kind, config.schedule.chunk_size, config.schedule.retain_per_forget,
            config.schedule.epochs, config.schedule.restart_per_chunk) == ("chunks", 32, 7, 7, True)
    training = config.training
    assert (training.learning_rate, training.batch_size, training.scheduler, training.layers, training.lora_rank) \
        == (1e-5, 1, "linear", LAST_EIGHT, 0)
    assert config.dtype == "bfloat16"  # loaded in bf16 and trained with bf16=True: no float32 copy
    assert (config.text.eos, config.text.answer_space, config.text.max_tokens) == (False, True, 0)


@pytest.mark.parametrize("kind", ["olmo-1b", "olmo-7b"])
def test_zjuklab_trains_two_lora_models_at_different_weights_and_ties_merges_them(kind):
    runs = configs("zjuklab", kind)
    assert list(runs) == ["over-forgetting", "under-forgetting"]
    weights = [(c.method_settings["npo_weight"], c.method_settings["kl_weight"], c.method_settings["nll_weight"])
               for c in runs.values()]
    assert weights == [(0.4, 0.4, 0.2), (0.3, 0.3, 0.4)]
    assert [(c.training.batch_size, c.training.gradient_accumulation) for c in runs.values()] == [(1, 4), (2, 4)]
    for config in runs.values():
        assert config.method == "npo+kl+gd" and config.method_settings["beta"] == 0.1
        assert config.method_settings["pooling"] == "batch"  # their NPO: one per-token-mean log-ratio a batch
        assert config.method_settings["kl_padded_length"] == 256  # their KL: batchmean over 256 positions a row
        assert (config.text.answer_space, config.text.eos, config.text.prompt_tokens, config.text.max_tokens) \
            == (False, True, 204, 256)
        assert (config.dtype, config.training.mixed_precision) == ("float16", "no")  # fp16 base, no autocast
        training = config.training
        assert (training.lora_rank, training.lora_alpha, training.lora_dropout, training.layers, training.modules) \
            == (32, 32, 0.05, None, None)
        assert (training.learning_rate, training.weight_decay, training.scheduler, training.warmup_ratio) \
            == (1e-4, 0.01, "linear", 0.2)
        assert (config.schedule.kind, config.schedule.epochs, config.schedule.retain_per_forget) == ("epochs", 5, 1)
    assert RECIPES["zjuklab"].merge == {"combination": "ties", "density": 0.8, "weights": [1.0, 1.0]}


@pytest.mark.parametrize("kind", ["olmo-1b", "olmo-7b"])
def test_sha256_trains_the_mlps_of_layers_0_to_5_with_an_adaptive_retain_weight(kind):
    (config,) = configs("sha256", kind).values()
    from dataclasses import asdict

    from lume.stages.unlearning import build_method

    assert config.method == "adaptive-gd"
    assert asdict(build_method(config.method, config.method_settings).settings) == {"base_weight": 1.2,
                                                                                     "max_weight": 2.3,
                                                                                     "baseline": "per-row"}
    training = config.training
    assert (training.layers, training.modules, training.lora_rank) == ([0, 1, 2, 3, 4, 5], ["mlp"], 0)
    assert (training.learning_rate, training.batch_size, training.gradient_accumulation) == (1.5e-5, 6, 10)
    assert (config.schedule.kind, config.schedule.epochs) == ("epochs", 8)
    assert (config.dtype, training.mixed_precision, config.text.answer_space) == ("bfloat16", "no", False)
    # the checkpoint of lowest loss every 4 steps, on 500 rows per task drawn from the training rows
    assert (config.eval_every, config.select, config.probes.validation_rows) == (4, "loss", 500)
    assert (config.probes.docs_per_task, config.probes.non_members, config.probes.mmlu_questions) == (0, 0, 0)


def test_the_lume_settings_keep_lumes_corrected_forms():
    (sha256,) = configs("sha256", "lume").values()
    assert sha256.method_settings.get("baseline", "mean") == "mean" and sha256.select == "last"
    (rmu,) = configs("adaptive-rmu", "lume").values()
    assert (rmu.method_settings["norms_from"], rmu.schedule.max_seconds) == ("task", 0.0)
    for name in RECIPES:
        for config in configs(name, "lume").values():
            assert config.dtype is None and config.text == UnlearnConfig().text


@pytest.mark.parametrize("kind, layer, scale, batch", [("olmo-1b", 14, 3.0, 8), ("olmo-7b", 26, 5.0, 12)])
def test_adaptive_rmu_steers_its_layer_with_per_task_coefficients(kind, layer, scale, batch):
    (config,) = configs("adaptive-rmu", kind).values()
    assert config.method == "rmu"
    assert config.method_settings == {"layer": layer, "adaptive_scale": scale, "alpha": 900.0, "tokens": "all",
                                      "norms_from": "first-batch"}
    # 100 epochs, each saved, the last one finished within the organisers' hour kept; no EOS; per-task cuts
    assert (config.schedule.kind, config.schedule.epochs, config.schedule.max_seconds) == ("epochs", 100, 3600)
    assert (config.text.eos, config.text.task_max_tokens) == (False, {"Task1": 256, "Task2": 105, "Task3": 335})
    training = config.training
    assert (training.modules, training.learning_rate, training.batch_size, training.max_grad_norm,
            training.scheduler) == (["down_proj"], 5e-5, batch, 0.0, "constant")


def trained(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("name, expected", [
    ("ails-ntua", lambda n: any(f".layers.{i}." in n for i in range(8, 16))),
    ("sha256", lambda n: ".mlp." in n and any(f".layers.{i}." in n for i in range(6))),
    ("adaptive-rmu", lambda n: n.endswith("mlp.down_proj.weight") and any(f".layers.{i}." in n for i in (12, 13, 14))),
])
def test_exactly_the_recipes_weights_train_on_a_model_shaped_like_olmo_1b(tokenizer, name, expected):
    from lume.stages.unlearning import build_method

    (config,) = configs(name, "olmo-1b").values()
    model = make_tiny_model(tokenizer, layers=16)
    scoped(model, config.training)
    build_method(config.method, config.method_settings).select_parameters(model)
    names = {n for n, _ in model.named_parameters()}
    assert trained(model) == {n for n in names if expected(n)} and trained(model)


def test_zjuklab_adapts_every_linear_layer_but_the_output_one(tokenizer):
    config = configs("zjuklab", "olmo-1b")["over-forgetting"]
    model = scoped(make_tiny_model(tokenizer, layers=2), config.training)
    adapted = {n.split(".lora_A")[0] for n in trained(model) if ".lora_A." in n}
    linear = {n for n, m in make_tiny_model(tokenizer, layers=2).named_modules() if isinstance(m, torch.nn.Linear)}
    assert {a.removeprefix("base_model.model.") for a in adapted} == linear - {"lm_head"}
    assert all(".lora_" in n for n in trained(model))


def test_which_weights_train_refuses_a_layer_the_model_lacks(tokenizer):
    with pytest.raises(LumeError, match="layer 4 does not exist: the model has 2 decoder layers"):
        scoped(make_tiny_model(tokenizer, layers=2), TrainingSettings(layers=[4]))
    with pytest.raises(LumeError, match="no weight trains"):
        scoped(make_tiny_model(tokenizer, layers=2), TrainingSettings(layers=[0], modules=["nothing_here"]))


def test_chunks_run_in_order_each_for_its_epochs_with_the_next_retain_examples():
    """AILS-NTUA's data chunking: the forget rows, each document's together and the documents in a
    seeded order, chunk after chunk, every row of a chunk `epochs` times, each with its own
    retain examples taken cyclically (the next ones for the next chunk)."""
    from lume.stages.unlearning.schedule import document_order

    settings = ScheduleSettings(kind="chunks", chunk_size=3, retain_per_forget=2, epochs=2, restart_per_chunk=True)
    documents = ["b", "a", "b", "c", "a"]
    schedule = plan(settings, None, forget_count=5, retain_count=7, batch_size=1, micro_batches_per_step=1,
                    forget_documents=documents, seed=4)
    order = document_order(documents, 4)
    assert sorted(order) == list(range(5)) and schedule.order == order
    assert [documents[i] for i in order] in (["a", "a", "b", "b", "c"], ["a", "a", "c", "b", "b"],
                                             ["b", "b", "a", "a", "c"], ["b", "b", "c", "a", "a"],
                                             ["c", "a", "a", "b", "b"], ["c", "b", "b", "a", "a"])
    assert document_order(list(documents), 4) == order  # seeded: the same order every run
    assert schedule.chunk_steps() == [6, 4] and schedule.steps == 10 and schedule.segments() == [6, 4]
    draws = [schedule.indices(0, step, range(5)) for step in range(10)]
    assert [f for f, _ in draws] == [[order[i]] for i in (0, 1, 2, 0, 1, 2, 3, 4, 3, 4)]
    assert [r for _, r in draws[:3]] == [[0, 1], [2, 3], [4, 5]]
    assert draws[3][1] == draws[0][1]  # the same retain examples at each pass over a chunk
    assert [r for _, r in draws[6:8]] == [[6, 0], [1, 2]]  # the next chunk goes on cycling
    with pytest.raises(LumeError, match="leave steps unset"):
        plan(settings, 12, 5, 7, 1, 1)


def test_rows_apart_takes_each_chunk_row_by_row_forget_then_its_retain_rows():
    """AILS-NTUA's single-GPU notebook: the chunk's rows in sequence, each its own step; a step of
    8 micro-batches of rows apart (8 processes, or accumulation) is the default set-up's step (1
    forget + its 7 retain rows)."""
    settings = ScheduleSettings(kind="chunks", chunk_size=2, retain_per_forget=2, epochs=2, rows_apart=True)
    schedule = plan(settings, None, forget_count=3, retain_count=5, batch_size=1, micro_batches_per_step=1, seed=4)
    assert schedule.chunk_steps() == [12, 6] and schedule.steps == 18
    f0, f1, f2 = schedule.order
    steps = [schedule.indices(0, step, range(3)) for step in range(18)]
    assert steps[:6] == [([f0], []), ([], [0]), ([], [1]), ([f1], []), ([], [2]), ([], [3])]
    assert steps[6:12] == steps[:6]  # the second pass over the chunk
    assert steps[12:15] == [([f2], []), ([], [4]), ([], [0])]  # the next chunk's retain rows go on cycling
    paired = replace(settings, chunk_size=32, retain_per_forget=7, epochs=1)
    eight = plan(paired, None, 4, 40, 1, 8, seed=4)
    together = plan(replace(paired, rows_apart=False), None, 4, 40, 1, 1, seed=4)
    for step in range(4):
        rows = [eight.indices(0, micro_batch, range(4)) for micro_batch in range(step * 8, step * 8 + 8)]
        assert ([i for f, _ in rows for i in f], [i for _, r in rows for i in r]) == together.indices(0, step, [])
    with pytest.raises(LumeError, match="rows_apart .* needs kind chunks, not epochs"):
        ScheduleSettings(kind="epochs", rows_apart=True)


def test_also_train_adds_weights_outside_the_chosen_layers(tokenizer):
    model = scoped(make_tiny_model(tokenizer, layers=2), TrainingSettings(layers=[-1], also_train=["embed_tokens"]))
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any("embed_tokens" in name for name in trained) and all("layers.0." not in name for name in trained)
    assert any("layers.1." in name for name in trained) and not any(name.endswith("norm.weight") and
                                                                    "layers" not in name for name in trained)
    with pytest.raises(LumeError, match="also_train: no weight of .* is named with 'nothing_here'"):
        scoped(make_tiny_model(tokenizer, layers=2), TrainingSettings(layers=[-1], also_train=["nothing_here"]))
    with pytest.raises(LumeError, match="needs full fine-tuning"):
        TrainingSettings(lora_rank=4, also_train=["lm_head"])


def test_epochs_visit_every_forget_example_once_per_epoch_and_cycle_the_retain_set():
    schedule = plan(ScheduleSettings(kind="epochs", epochs=2), None, forget_count=6, retain_count=4, batch_size=2,
                    micro_batches_per_step=1)
    assert schedule.steps == 6
    forget = [i for step in range(6) for i in schedule.indices(3, step, range(6))[0]]
    assert sorted(forget[:6]) == list(range(6)) == sorted(forget[6:]) and forget[:6] != forget[6:]
    retain = [i for step in range(6) for i in schedule.indices(3, step, range(6))[1]]
    assert sorted(retain[:4]) == list(range(4)) and retain[4:8] == retain[:4]
    two = plan(ScheduleSettings(kind="epochs"), None, 6, 4, 1, 2)  # two micro-batches a step share each epoch
    assert two.steps == 3 and sorted(i for micro_batch in range(6) for i in two.indices(0, micro_batch, range(6))[0]
                                     ) == list(range(6))


def test_a_fresh_optimiser_per_segment_equals_separate_trainers(tiny_model, tmp_path, fresh_accelerate_state):
    """Segments [2, 2] train as two trainers of 2 steps, the second from the first's weights with
    new AdamW moments and its learning rate schedule started again."""
    import copy

    from lume.training import TrainingRun, train

    ids = torch.tensor([[5, 9, 12, 7, 3, 8]])

    def step_loss(model, micro_step):
        loss = model(input_ids=ids, labels=ids).loss
        return loss, {"loss": loss.item()}

    settings = TrainingSettings(learning_rate=1e-2, scheduler="linear", mixed_precision="no")  # exact
    together = copy.deepcopy(tiny_model).float().train()
    train(together, TrainingRun(settings, 4, segments=[2, 2]), step_loss, tmp_path / "a", show_progress=False)
    apart = copy.deepcopy(tiny_model).float().train()
    train(apart, TrainingRun(settings, 2), step_loss, tmp_path / "b", show_progress=False)
    train(apart, TrainingRun(settings, 2), step_loss, tmp_path / "c", show_progress=False)
    one = copy.deepcopy(tiny_model).float().train()
    train(one, TrainingRun(settings, 4), step_loss, tmp_path / "d", show_progress=False)
    a, b, c = (dict(m.named_parameters()) for m in (together, apart, one))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not all(torch.allclose(a[k], c[k], atol=1e-4) for k in a)


def test_the_target_kind_follows_the_model():
    assert target_kind("lume-olmo-1b") == "olmo-1b" and target_kind("lume-olmo-7b") == "olmo-7b"
    assert target_kind("some/folder") == "lume" and target_kind("x", "olmo-7b") == "olmo-7b"
    with pytest.raises(LumeError, match="recipe target 'olmo-3b'"):
        target_kind("x", "olmo-3b")


# recipe: overrides for the tiny fitted model (its rows are few and short), least forget NLL
# rise and most retain NLL rise, in nats per token (measured: about twice these)
BEHAVIOUR = {
    "ails-ntua": ({"schedule": {"chunk_size": 2, "retain_per_forget": 3, "epochs": 10},
                   "training": {"learning_rate": 3e-3, "layers": [-2, -1]}}, 2.0, 0.2),
    "sha256": ({"schedule": {"epochs": 20}, "training": {"learning_rate": 3e-3, "layers": [0, 1], "batch_size": 4}},
               2.0, 0.2),
    "adaptive-rmu": ({"method_settings": {"layer": 1, "alpha": 10.0}, "schedule": {"epochs": 30},
                      "training": {"learning_rate": 1e-2, "batch_size": 4}}, 0.5, 0.2),
    "zjuklab": ({"schedule": {"epochs": 6}, "training": {"learning_rate": 1e-2, "lora_rank": 8}}, 2.0, 0.2),
}


@pytest.mark.parametrize("name", sorted(BEHAVIOUR))
def test_each_recipe_raises_the_forget_nll_and_keeps_the_retain_nll(name, fitted, tokenizer, rows, tmp_path):
    overrides, least_rise, most_retain_rise = BEHAVIOUR[name]
    forget_before, retain_before = nlls(fitted, tokenizer, rows)
    report = unlearn_with_recipe(fitted, tmp_path / name, name, {**overrides, "progress": False},
                                 forget=rows[0], retain=rows[1]).to_json()
    forget_after, retain_after = nlls(tmp_path / name, tokenizer, rows)
    assert forget_after - forget_before >= least_rise, (forget_before, forget_after)
    assert retain_after - retain_before <= most_retain_rise, (retain_before, retain_after)
    saved = json.loads((tmp_path / name / "lume_unlearn.json").read_text())
    if RECIPES[name].merge:
        assert list(saved["runs"]) == list(RECIPES[name].runs["lume"]) and saved["merge"]["density"] == 0.8
    else:
        assert saved["config"]["recipe"] == name
    assert report["steps"] == saved["steps"]


def test_ails_ntuas_single_gpu_set_up_unlearns_row_by_row(fitted, tokenizer, rows, tmp_path):
    """Their SUGD.ipynb: one row a step (forget, then its retain rows), the embeddings and the
    output layer training beside the last layers."""
    overrides = {"schedule": {"chunk_size": 2, "retain_per_forget": 3, "epochs": 10, "rows_apart": True},
                 "training": {"learning_rate": 3e-3, "layers": [-1], "batch_size": 1,
                              "also_train": ["embed_tokens", "lm_head"]}, "progress": False}
    forget_before, retain_before = nlls(fitted, tokenizer, rows)
    report = unlearn_with_recipe(fitted, tmp_path / "single", "ails-ntua", overrides, forget=rows[0], retain=rows[1])
    forget_after, retain_after = nlls(tmp_path / "single", tokenizer, rows)
    assert report.steps == len(rows[0]) * 4 * 10  # every row of every pass its own step
    # measured: the forget NLL rises about 11 nats a token, the retain NLL stays within 0.001
    assert forget_after - forget_before >= 5.0 and retain_after - retain_before <= 0.2, (forget_after, retain_after)
    from transformers import AutoModelForCausalLM

    before, after = (AutoModelForCausalLM.from_pretrained(folder) for folder in (fitted, tmp_path / "single"))
    assert not torch.equal(before.get_input_embeddings().weight, after.get_input_embeddings().weight)
    assert torch.equal(before.model.layers[0].mlp.up_proj.weight, after.model.layers[0].mlp.up_proj.weight)


def test_the_single_gpu_set_up_the_docs_give_configures_the_notebooks_points():
    """docs/recipes.md's YAML for SUGD.ipynb, over the recipe's OLMo-7B settings: one row a step
    on one process at batch 1, embeddings and output layer trained, fp16 over bf16 weights."""
    import re

    import yaml

    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "recipes.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```yaml\n(methods:\n  - recipe: ails-ntua\n.*?)```", text, re.S)
    (entry,) = yaml.safe_load(block)["methods"]
    overrides = {k: v for k, v in entry.items() if k not in ("recipe", "name")}
    (config,) = RECIPES["ails-ntua"].configs("olmo-7b", overrides).values()
    assert (config.schedule.rows_apart, config.schedule.retain_per_forget, config.training.batch_size) == (True, 7, 1)
    assert (config.training.also_train, config.training.layers) == (["embed_tokens", "lm_head"], LAST_EIGHT)
    assert (config.training.mixed_precision, config.dtype, config.training.learning_rate) == ("fp16", "bfloat16", 1e-5)


def test_every_recipe_has_a_behaviour_case():
    assert set(BEHAVIOUR) == set(RECIPES)


def test_unlearn_help_lists_the_recipes_and_the_new_methods():
    from typer.testing import CliRunner

    from lume.cli import app

    result = CliRunner().invoke(app, ["unlearn", "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    text = " ".join(result.output.split())
    assert all(name in text for name in [*RECIPES, "altpo", "ce-u", "pdu"]), text


def test_the_report_puts_a_recipes_published_numbers_beside_lumes_labelled_as_published():
    from lume.reports.leaderboard import published_recipes

    summary = {"final": 0.5, "task_aggregate": 0.6, "mia": {"mia_score": 0.7}, "mmlu": {"accuracy": 0.2}}
    released = model_entry("ails", summary, training={"config": {"recipe": "ails-ntua"}, "model_in": "lume-olmo-1b"})
    merged = model_entry("zju", summary, training={"recipe": "zjuklab", "target_kind": "olmo-1b", "runs": {}})
    ours = model_entry("demo", summary, training={"config": {"recipe": "ails-ntua"}, "model_in": "x"})
    lines = published_recipes([released, merged, ours, model_entry("target", summary)])
    table = "\n".join(lines)
    assert "published" in table.lower()
    assert "| ails (ails-ntua, olmo-1b) | 0.500 | 0.600 | 0.700 | 0.200 | 0.688 | 0.964 | 0.857 | 0.242 |" in table
    assert "| zju (zjuklab, olmo-1b) | 0.500 | 0.600 | 0.700 | 0.200 | 0.483 | 0.915 | 0.292 | 0.243 |" in table
    assert "demo" not in table  # a target lume built has no published numbers


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_has_every_published_cell_for_both_released_targets(name):
    """The leaderboard gives each team's task aggregate, MIA score and MMLU on both targets; the
    final score is their mean (to the leaderboard's three decimals)."""
    for kind in ("olmo-7b", "olmo-1b"):
        scores = RECIPES[name].published[kind]
        parts = (scores.task_aggregate, scores.mia_score, scores.mmlu)
        assert None not in parts and abs(sum(parts) / 3 - scores.final) <= 0.0011, (kind, scores)


def test_the_published_table_reads_the_recipes_numbers_and_keeps_no_copy():
    from lume.reports import leaderboard

    RECIPES["zjuklab"].published["olmo-1b"] = replace(RECIPES["zjuklab"].published["olmo-1b"], final=0.123)
    try:
        table = "\n".join(leaderboard.published([model_entry("target", {"model": {"name": "lume-olmo-1b"}})]))
    finally:
        RECIPES["zjuklab"].published["olmo-1b"] = replace(RECIPES["zjuklab"].published["olmo-1b"], final=0.483)
    assert "| ZJUKLAB (recipe zjuklab) | 0.123 | 0.915 | 0.292 | 0.243 |" in table
    assert table.index("AILS-NTUA, 1st") < table.index("SHA256, 2nd") < table.index("ZJUKLAB")


def test_a_recipes_runs_each_name_themselves_in_their_progress_bar(tmp_path, tiny_model_dir):
    from lume.stages.unlearning import UnlearnConfig
    from lume.stages.unlearning.unlearner import _UnlearnStage

    def bar(folder: str, recipe: str | None) -> str:
        config = UnlearnConfig(method="npo+kl+gd", recipe=recipe)
        return _UnlearnStage(tiny_model_dir, tmp_path / folder, config, None, [], [], None, False, None).description

    assert bar("runs/first", "zjuklab") != bar("runs/second", "zjuklab")
    assert bar("runs/first", "zjuklab") == "unlearning (zjuklab first: npo+kl+gd)"
    assert bar("out", None) == "unlearning (npo+kl+gd)"
    assert bar("zjuklab", "zjuklab") == "unlearning (zjuklab: npo+kl+gd)"  # a one-run recipe in a folder of its name


# the released-target settings, scaled to the tiny model: its layers, a few rows, short runs
RELEASED_SCALED = {
    "ails-ntua": {"training": {"layers": [-1]}, "schedule": {"chunk_size": 4, "epochs": 1}},
    "sha256": {"training": {"layers": [0], "gradient_accumulation": 1}, "schedule": {"epochs": 2},
               "probes": {"validation_rows": 2}},
    "zjuklab": {"schedule": {"epochs": 1}, "training": {"lora_rank": 4}},
    "adaptive-rmu": {"method_settings": {"layer": 1}, "schedule": {"epochs": 3, "max_seconds": 1e-6}},
}


@pytest.mark.parametrize("name", sorted(RELEASED_SCALED))
def test_each_recipes_released_target_settings_run_as_their_team_ran_them(name, tmp_path, tiny_model_dir, sets,
                                                                           fresh_accelerate_state):
    """bf16 and fp16 weights, their text, SHA256's choice by validation loss, the time budget."""
    forget, retain = sets
    report = unlearn_with_recipe(tiny_model_dir, tmp_path / name, name, {**RELEASED_SCALED[name], "progress": False},
                                 target="olmo-1b", forget=forget, retain=retain).to_json()
    trained = tmp_path / name / ("runs/over-forgetting" if name == "zjuklab" else "")  # zjuklab: before its merge
    saved = json.loads((trained / "config.json").read_text())
    dtype = saved.get("dtype") or saved.get("torch_dtype")
    assert dtype == {"ails-ntua": "bfloat16", "sha256": "bfloat16", "zjuklab": "float16"}.get(name, "float32")
    if name == "sha256":
        assert report["selection"]["select"] == "loss" and report["probes"][-1]["validation_loss"] is not None
    if name == "adaptive-rmu":  # its 8 rows a step hold more than the forget set: one step, then the budget
        assert report["steps"] == 1 and report["stopped"].startswith("time budget:")
