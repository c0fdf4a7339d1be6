import json
import re
import shutil
import statistics
import subprocess
import sys

import pytest

import lume.inference.backends.hf as scoring
import lume.stages.evaluation.membership_section as membership
from lume.stages.evaluation import EvalConfig, evaluate
from lume.metrics import AGGREGATE_ORDER
from tests.test_mmlu import make_mmlu


@pytest.fixture(scope="module")
def config(tmp_path_factory, data_dir):
    mmlu_dir = make_mmlu(tmp_path_factory.mktemp("mmlu"))
    return EvalConfig(data_dir=str(data_dir), docs_per_task=1, max_new_tokens=8, mia_set="validation",
                      mmlu_dir=str(mmlu_dir), target_mmlu=0.9, progress=False)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model_dir, config):
    out = tmp_path_factory.mktemp("eval")
    return out, evaluate(tiny_model_dir, out, config).to_json()


def test_summary_numbers_follow_from_the_items(evaluated):
    out, summary = evaluated
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(items) == summary["data"]["items"] == 2 * (2 + 6 + 2)  # Task2 has 5 QA rows
    twelve = []
    for split, task, metric in AGGREGATE_ORDER:
        scores = [i["score"] for i in items if (i["split"], i["task"], i["metric"]) == (split, task, metric)]
        mean = sum(scores) / len(scores)
        assert summary["scores"][f"{split}/{task}/{metric}"] == pytest.approx(mean)
        twelve.append(1 - mean if split == "forget" else mean)
    assert summary["task_aggregate"] == pytest.approx(statistics.harmonic_mean(twelve))
    parts = (summary["task_aggregate"], summary["mia"]["mia_score"], summary["mmlu"]["accuracy"])
    assert summary["final"] == pytest.approx(sum(parts) / 3)
    assert summary["mia"]["members"] == 34 and summary["mia"]["non_members"] == 34
    assert summary["mia"]["set"] == "semeval-validation" and "mia_semeval" not in summary  # no manifest: official files
    assert set(summary["intervals"]) >= {"task_aggregate", "mia_score", "mmlu", "final"}
    assert summary["intervals"]["final"][0] <= summary["final"] <= summary["intervals"]["final"][1]
    assert summary["mmlu"]["questions"] == 12 and summary["mmlu"]["below_threshold"] is True
    assert summary["model"]["fingerprint"] and summary["data"]["fingerprint"]
    assert summary["versions"]["torch"] and summary["timings"]["total_s"] > 0
    for name in ("items.jsonl", "mia.jsonl", "mmlu.jsonl", "summary.json"):
        assert (out / name).is_file()


def test_an_interrupted_run_resumes_without_redoing_work(tmp_path, tiny_model_dir, config, evaluated,
                                                         monkeypatch):
    import shutil

    _, summary = evaluated
    out = tmp_path / "run"
    shutil.copytree(evaluated[0], out)
    cache = out / "cache" / "items.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-5]) + '\n{"id": "torn')  # killed mid-write
    generated = []
    real = scoring.generate_greedy
    monkeypatch.setattr(scoring, "generate_greedy",
                        lambda model, tok, prompts, **kw: generated.extend(prompts) or real(model, tok, prompts, **kw))
    again = evaluate(tiny_model_dir, out, config).to_json()
    assert len(generated) == 5
    assert again["scores"] == summary["scores"] and again["final"] == summary["final"]


def test_a_different_model_does_not_reuse_the_cache(tmp_path, tokenizer, config, evaluated, monkeypatch):
    import shutil

    from tests.conftest import make_tiny_model

    other = tmp_path / "other-model"
    make_tiny_model(tokenizer, seed=5).save_pretrained(other)
    tokenizer.save_pretrained(other)
    out = tmp_path / "run"
    shutil.copytree(evaluated[0], out)
    generated = []
    real = scoring.generate_greedy
    monkeypatch.setattr(scoring, "generate_greedy",
                        lambda model, tok, prompts, **kw: generated.extend(prompts) or real(model, tok, prompts, **kw))
    evaluate(other, out, EvalConfig(**{**config.__dict__, "mia": False, "mmlu": False}))
    assert len(generated) == evaluated[1]["data"]["items"]


@pytest.mark.slow
def test_cli_reports_a_bad_model_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "lume", "evaluate", str(tmp_path), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "not a model folder (no config.json)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o" / "summary.json").exists()


def test_results_get_the_usual_file_mode(evaluated):
    import os

    out, _ = evaluated
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "summary.json").stat().st_mode & 0o777 == 0o666 & ~umask


class _FakeVLLM:
    """Stands in for the `vllm` module: the same call shapes, transformers greedy underneath."""

    class SamplingParams:
        def __init__(self, temperature, max_tokens, stop_token_ids):
            assert temperature == 0.0
            self.max_tokens, self.stop_token_ids = max_tokens, stop_token_ids

    def __init__(self, model):
        fake = self

        class LLM:
            def __init__(self, model, dtype, seed, gpu_memory_utilization):
                fake.engine_args = {"model": model, "dtype": dtype, "memory": gpu_memory_utilization}

            def generate(self, prompts, params, use_tqdm):
                from types import SimpleNamespace

                import torch
                fake.calls.append(len(prompts))
                outputs = []
                for prompt in prompts:
                    ids = torch.tensor([prompt["prompt_token_ids"]])
                    new = fake.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                              max_new_tokens=params.max_tokens, eos_token_id=params.stop_token_ids,
                                              pad_token_id=0)[0, ids.shape[1]:].tolist()
                    reason = "stop" if new[-1] in params.stop_token_ids else "length"
                    outputs.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=new, finish_reason=reason)]))
                return outputs

        self.LLM, self.model, self.calls = LLM, model, []


def test_vllm_backend_feeds_token_ids_and_scores_like_transformers(tmp_path, tiny_model_dir, config, evaluated,
                                                                   monkeypatch):
    import lume.inference.backends.vllm as generation_vllm
    from lume.inference.generation import generate_greedy
    from lume.models import load_model

    loaded = load_model(tiny_model_dir)
    fake = _FakeVLLM(loaded.model)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(generation_vllm, "CHUNK", 7)  # several calls, results still in order
    summary = evaluate(loaded, tmp_path, EvalConfig(**{**config.__dict__, "backend": "vllm", "mia": False,
                                                       "mmlu": False, "early_exit": False})).to_json()
    assert fake.engine_args == {"model": str(tiny_model_dir), "dtype": "float32", "memory": 0.5}
    assert fake.calls == [7, 7, 6]
    assert summary["scores"] == evaluated[1]["scores"]
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    expected = generate_greedy(loaded.model, loaded.tokenizer, [i["input"] for i in items], max_new_tokens=8)
    assert [(i["generation"], i["new_tokens"], i["stop"]) for i in items] == [
        (g.text, g.new_tokens, g.stop) for g in expected]


def test_vllm_backend_without_vllm_says_how_to_get_it(tmp_path, tiny_model_dir, config, monkeypatch):
    from lume.errors import LumeError

    monkeypatch.setitem(sys.modules, "vllm", None)  # import fails as if not installed
    with pytest.raises(LumeError, match=r"pip install 'lume-unlearning\[vllm\]'"):
        evaluate(tiny_model_dir, tmp_path, EvalConfig(**{**config.__dict__, "backend": "vllm"}))
    with pytest.raises(LumeError, match=r"unknown backend 'tgi' \(choose from hf, vllm, or give package"):
        evaluate(tiny_model_dir, tmp_path, EvalConfig(**{**config.__dict__, "backend": "tgi"}))


def test_each_part_loads_the_model_in_the_references_dtype():
    from lume.stages.evaluation import part_dtypes

    assert part_dtypes(EvalConfig(), "cuda") == {"generation": "bfloat16", "mia": "bfloat16", "mmlu": "auto"}
    assert part_dtypes(EvalConfig(), "cpu") == dict.fromkeys(("generation", "mia", "mmlu"), "float32")
    assert part_dtypes(EvalConfig(dtype="auto"), "cuda") == dict.fromkeys(("generation", "mia", "mmlu"), "auto")


def test_mmlu_in_the_checkpoints_own_dtype_gets_its_own_copy(tmp_path, tokenizer, config, monkeypatch):
    import torch

    import lume.stages.evaluation.evaluator as evaluation

    from tests.conftest import make_tiny_model

    folder = tmp_path / "bf16-model"
    make_tiny_model(tokenizer).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    no_likelihoods = {**config.__dict__, "mia": False, "extraction": False, "general": False}
    summary = evaluate(folder, tmp_path / "eval", EvalConfig(**{**no_likelihoods, "dtype": "auto"})).to_json()
    assert summary["dtypes"] == {"generation": "torch.bfloat16", "mmlu": "torch.bfloat16"}
    # the GPU defaults, on this CPU: generation in one dtype, MMLU in the checkpoint's
    monkeypatch.setattr(evaluation, "part_dtypes",
                        lambda config, device: {"generation": "float32", "mia": "float32", "mmlu": "auto"})
    summary = evaluate(folder, tmp_path / "eval", EvalConfig(**no_likelihoods)).to_json()
    assert summary["dtypes"] == {"generation": "torch.float32", "mmlu": "torch.bfloat16"}


def test_mia_set_none_scores_a_lume_target_on_its_own_documents_and_refuses_other_models(
        tmp_path, tiny_model_dir, tiny_target, config):
    from lume.errors import LumeError

    no_files = {**config.__dict__, "mia_set": "none", "mmlu": False, "docs_per_task": None}  # the manifest's
    summary = evaluate(tiny_target, tmp_path / "target", EvalConfig(**no_files)).to_json()
    assert summary["mia"]["set"] == "held-out" and "mia_semeval" not in summary
    rows = [json.loads(line) for line in (tmp_path / "target" / "mia.jsonl").read_text().splitlines()]
    assert rows and all(row["set"] == "held-out" for row in rows)
    with pytest.raises(LumeError, match="mia_set 'none' leaves no membership documents"):
        evaluate(tiny_model_dir, tmp_path / "plain", EvalConfig(**no_files))


def test_every_attack_has_an_auc_with_an_interval_and_the_reference_is_the_base_model(
        tmp_path, tiny_model_dir, tiny_target, config, monkeypatch):
    """The tiny target's base is itself here: the Reference attack's calibrated losses are all 0,
    so it cannot tell members from anyone; the base's losses are cached for the next model."""
    from lume.data.manifest import read_manifest
    from lume.metrics import MIA_ATTACKS

    target = tmp_path / "target"
    shutil.copytree(tiny_target, target)
    manifest = read_manifest(target)
    manifest.base_model = str(tiny_model_dir)
    manifest.write(target)
    monkeypatch.setenv("LUME_CACHE", str(tmp_path / "cache"))
    settings = EvalConfig(**{**config.__dict__, "mia_set": "none", "mmlu": False, "docs_per_task": None})
    summary = evaluate(target, tmp_path / "eval", settings).to_json()
    rows = [json.loads(line) for line in (tmp_path / "eval" / "mia.jsonl").read_text().splitlines()]
    assert rows and all(abs(row["reference"]) < 1e-5 for row in rows) and "auc_reference" in summary["mia"]
    assert set(summary["intervals"]) >= {"mia_auc"} | {f"mia_auc_{a}" for a in MIA_ATTACKS if a != "loss"}
    loads = []
    real = membership.load_model
    monkeypatch.setattr(membership, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    again = evaluate(target, tmp_path / "again", settings).to_json()
    assert not loads and again["mia"]["auc_reference"] == summary["mia"]["auc_reference"]  # from the cache


def test_verify_recomputes_every_official_number_and_names_an_edited_one(evaluated, tmp_path, capsys):
    """`lume verify`: equal on a fresh evaluation (and a study holding it); an edited per-item
    score, summary number or MMLU logit is named, exit 1."""
    from lume.cli import main
    from lume.reports.verify import verify_evaluation

    folder = tmp_path / "study" / "eval" / "model"
    shutil.copytree(evaluated[0], folder)
    checks = verify_evaluation(folder)
    assert all(check.equal for check in checks), [c.line() for c in checks if not c.equal]
    assert len(checks) == 1 + 12 + 1 + 2 + 1 + 1
    assert {"task aggregate", "MIA score", "MMLU accuracy", "final score"} <= {check.name for check in checks}
    main(["verify", str(tmp_path / "study")])  # exit 0: no SystemExit
    assert "DIFFERS" not in capsys.readouterr().out

    items = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    items[3]["score"] += 0.25
    (folder / "items.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    wrong = [check for check in verify_evaluation(folder) if not check.equal]
    assert [check.name for check in wrong] == ["items scored as recorded"] and items[3]["id"] in wrong[0].where

    shutil.copy(evaluated[0] / "items.jsonl", folder / "items.jsonl")
    summary = json.loads((folder / "summary.json").read_text())
    summary["task_aggregate"] += 0.01
    (folder / "summary.json").write_text(json.dumps(summary))
    mmlu = [json.loads(line) for line in (folder / "mmlu.jsonl").read_text().splitlines()]
    right = not mmlu[0]["correct"]  # a question it got right is now wrong, and the other way round
    mmlu[0]["letter_logits"] = [100.0 if ("ABCD"[k] == mmlu[0]["answer"]) == right else -100.0 for k in range(4)]
    (folder / "mmlu.jsonl").write_text("".join(json.dumps(row) + "\n" for row in mmlu))
    # the final score recomputed from the edited MMLU logits differs too
    assert {check.name for check in verify_evaluation(folder) if not check.equal} == {"task aggregate",
                                                                                      "MMLU accuracy", "final score"}
    with pytest.raises(SystemExit) as exited:
        main(["verify", str(folder)])
    assert exited.value.code == 1 and "DIFFERS  task aggregate" in capsys.readouterr().out


def test_each_section_takes_its_own_settings_under_its_name(tmp_path, tiny_model_dir, config, evaluated,
                                                            monkeypatch):
    """`section: {mia: {batch_size: 3}, mmlu: {batch_size: 2}}` reaches the two sections that batch
    (they fixed 4 and 8 before); the numbers stay the protocol's."""
    import lume.stages.evaluation.mmlu_section as mmlu_section

    seen = {}
    spied = ((membership, "membership_attack_scores", "mia"), (mmlu_section, "evaluate_mmlu", "mmlu"))
    for module, name, part in spied:
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _part=part, **k: seen.setdefault(_part, set()).add(
            k["batch_size"]) or _real(*a, **k))
    settings = EvalConfig(**{**config.__dict__, "section": {"mia": {"batch_size": 3}, "mmlu": {"batch_size": 2}}})
    summary = evaluate(tiny_model_dir, tmp_path / "eval", settings).to_json()
    assert seen == {"mia": {3}, "mmlu": {2}}
    default = evaluated[1]
    assert summary["mmlu"]["accuracy"] == default["mmlu"]["accuracy"]
    assert summary["mia"]["auc_loss"] == pytest.approx(default["mia"]["auc_loss"], abs=1e-6)


@pytest.mark.parametrize("section, message", [
    ({"mia": {"batch_size": 0}}, "section 'mia': section.mia.batch_size must be at least 1, got 0"),
    ({"mmlu": {"batches": 2}}, "field 'section.mmlu.batches': unknown field (expected one of batch_size)"),
    ({"nope": {}}, "unknown section 'nope'"),
])
def test_a_sections_bad_setting_is_refused_naming_it(section, message):
    from lume.errors import LumeError

    with pytest.raises(LumeError, match=re.escape(message)):
        EvalConfig(section=section)


def test_a_sections_setting_is_reachable_from_a_study_file_and_the_command_line(tmp_path):
    from lume.cli import configured
    from lume.errors import InputError
    from lume.study.run import load_config

    assert configured(EvalConfig(), {}, ["section.mmlu.batch_size=2"]).section == {"mmlu": {"batch_size": 2}}
    path = tmp_path / "study.yaml"
    path.write_text("evaluation: {section: {mia: {batch_size: 16}}}\n")
    assert load_config(path).evaluation.section == {"mia": {"batch_size": 16}}
    path.write_text("evaluation: {section: {mia: {batch_size: -1}}}\n")
    with pytest.raises(InputError, match=re.escape("study.yaml: field 'evaluation': section 'mia': "
                                                   "section.mia.batch_size must be at least 1, got -1")):
        load_config(path)


def test_the_general_text_nll_is_each_documents_mean_token_loss_on_text_no_target_saw(evaluated, tiny_model_dir):
    """184 SemEval non-member Wikipedia documents (both folds); a document's number is the loss
    transformers itself gives the document's first 128 tokens, and the summary's is their mean
    with a bootstrap interval."""
    import torch

    from lume.models import load_model

    out, summary = evaluated
    rows = [json.loads(line) for line in (out / "general.jsonl").read_text().splitlines()]
    part = summary["general"]
    assert part["documents"] == len(rows) == 184 and len({r["id"] for r in rows}) == 184
    assert part["nll"] == pytest.approx(statistics.mean(r["nll"] for r in rows), rel=1e-12)
    low, high = summary["intervals"]["general_nll"]
    assert low < part["nll"] < high
    loaded = load_model(tiny_model_dir, dtype="float32", device="cpu")
    from lume.data import load_mia

    text = next(d.text for d in load_mia(summary["data"]["dir"]) if not d.member)
    ids = torch.tensor([loaded.tokenizer(text).input_ids[:128]])
    with torch.no_grad():
        expected = loaded.model(input_ids=ids, labels=ids).loss.item()
    first = next(r for r in rows if r["id"].startswith("final/"))
    assert first["nll"] == pytest.approx(expected, rel=1e-4) and first["tokens"] == ids.shape[1]


def test_without_the_semeval_files_the_general_text_nll_is_left_out(tmp_path, tiny_model_dir, data_dir):
    shutil.copytree(data_dir / "lume", tmp_path / "data" / "lume")
    settings = EvalConfig(data_dir=str(tmp_path / "data"), docs_per_task=1, max_new_tokens=4, mia=False, mmlu=False,
                          extraction=False, progress=False)
    summary = evaluate(tiny_model_dir, tmp_path / "eval", settings).to_json()
    assert "general" not in summary and not (tmp_path / "eval" / "general.jsonl").exists()
