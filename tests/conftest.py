"""Shared fixtures: the real LUME data (required, never skipped) and tiny models."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from lume.data.paths import resolve_data_dir

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two test processes, one a core
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # and each process they start, one thread each
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def untuned(request, tmp_path_factory, monkeypatch):
    """Each test runs without lume's tuned defaults (their values suit SmolLM2 targets, and would
    change what a tiny model's test unlearns); a test marked `tuned_defaults` keeps them."""
    from lume.stages.unlearning import tuned

    tuned.tuned_defaults.cache_clear()
    if request.node.get_closest_marker("tuned_defaults"):
        monkeypatch.delenv(tuned.TUNED_VARIABLE, raising=False)
    else:
        path = tmp_path_factory.getbasetemp() / "untuned.yaml"
        if not path.is_file():  # one per test process
            path.write_text("methods: []\n")
        monkeypatch.setenv(tuned.TUNED_VARIABLE, str(path))  # the processes a test starts read none either
    yield
    tuned.tuned_defaults.cache_clear()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder; a missing one fails the run instead of skipping tests."""
    path = resolve_data_dir()
    assert (path / "lume" / "forget.jsonl").is_file(), f"LUME data missing under {path}"
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    """Write rows (dicts are dumped, strings written as they are) one per line."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def lume_rows(doc: str, task: str = "Task1", n_qa: int = 1, split: str | None = None) -> list[dict]:
    """A well-formed document: its sc row and n_qa QA rows."""
    extra = {"split": split} if split else {}
    rows = [{"id": f"{doc}sc1", "input": f"Story {doc} begins", "output": "and ends.",
             "task": task, **extra}]
    rows += [{"id": f"{doc}qa{i}", "input": f"Question {i} on {doc}?", "output": f"Answer {i}",
              "task": task, **extra} for i in range(n_qa)]
    return rows


def run_cli(capsys, *args) -> tuple[int, str]:
    """Run `lume ARGS` in this process: (exit status, stderr)."""
    from lume.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exited:
        code = exited.code
    return code, capsys.readouterr().err


@pytest.fixture
def split_files(tmp_path) -> tuple[Path, Path]:
    """(retain, forget) JSONL files of two small documents each, for `lume unlearn M R F OUT`."""
    retain = write_jsonl(tmp_path / "retain.jsonl", lume_rows("r1", split="retain") + lume_rows("r2", split="retain"))
    forget = write_jsonl(tmp_path / "forget.jsonl", lume_rows("f1", split="forget") + lume_rows("f2", split="forget"))
    return retain, forget


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    """The built-in SmolLM2-135M, converted once to a safetensors folder in lume's cache (slow tests)."""
    from lume.models import DEFAULT_MODEL, resolve_model_path

    return resolve_model_path(DEFAULT_MODEL)[1]


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_folder)


EOS = "<|endoftext|>"


@pytest.fixture(scope="session")
def tokenizer(data_dir):
    """A byte-level BPE tokenizer of 1,000 tokens trained here on LUME text (about a second):
    any text encodes, and the tiny models built on it stay small and fast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [row for name in ("forget.jsonl", "retain.jsonl")
             for line in (data_dir / "lume" / name).read_text().splitlines()[:300]
             for row in json.loads(line).values() if isinstance(row, str)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=1000, special_tokens=[EOS], show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    loaded = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=EOS)
    loaded.padding_side = "left"
    return loaded


def make_tiny_model(tokenizer, seed: int = 0, layers: int = 2):
    """A randomly initialised Llama with SmolLM2's vocabulary: fast, and any bug shows."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    # Larger weights than the default init make greedy outputs vary with the prompt.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(8.0 if parameter.dim() > 1 else 1.0)
    return model


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    return make_tiny_model(tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer, tiny_model) -> Path:
    """The tiny model saved as a model folder, loadable with `lume.models.load_model`."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_target(tmp_path_factory, tiny_model_dir, data_dir):
    """The tiny model as a lume target: one document per task and split trained, two held out."""
    from lume import data
    from lume.data.manifest import TargetManifest

    folder = tmp_path_factory.mktemp("target") / "model"
    shutil.copytree(tiny_model_dir, folder)
    dataset = data.load(data_dir)
    selection = data.select_documents(dataset.documents, 1, 2, seed=0)
    TargetManifest.from_selection(selection, base_model="tiny", data_fingerprint=dataset.fingerprint).write(folder)
    return folder


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one mixed-precision setting per process: start and leave a clean one."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def first_documents_records(data_dir, count: int) -> tuple[list, list]:
    """The records (sentence completion and QA) of the first `count` forget and retain documents."""
    from lume import data

    documents = data.load(data_dir).documents
    pick = lambda split: [r for d in [d for d in documents if d.split == split][:count] for r in d.records]  # noqa: E731
    return pick("forget"), pick("retain")


@pytest.fixture(scope="module")
def sets(data_dir):
    """Two forget and two retain documents' records (a module may ask for more with its own)."""
    return first_documents_records(data_dir, 2)


BEHAVIOUR_ROWS = 4  # forget rows, and as many retain rows, of the behaviour cases
FIT_STEPS, FIT_RATE = 60, 1e-2


@pytest.fixture(scope="session")
def rows(data_dir):
    """Short QA rows: BEHAVIOUR_ROWS forget, as many retain."""
    from lume import data

    records = sorted(data.load(data_dir).records, key=lambda r: len(r.input) + len(r.output))
    pick = lambda split: [r for r in records if r.split == split and "qa" in r.id][:BEHAVIOUR_ROWS]  # noqa: E731
    return pick("forget"), pick("retain")


@pytest.fixture(scope="session")
def fitted(tmp_path_factory, tokenizer, rows):
    """A tiny model after plain fine-tuning on the forget and retain rows (it knows them)."""
    import torch

    from lume.training import collate, prompt_answer_example

    torch.manual_seed(0)
    model = make_tiny_model(tokenizer, seed=1).train()
    examples = [prompt_answer_example(tokenizer, r.input, r.output) for r in rows[0] + rows[1]]
    batch = collate(examples, tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=FIT_RATE)
    for _ in range(FIT_STEPS):
        model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("fitted")
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def model_entry(label: str, summary: dict, mia: list | None = None, training: dict | None = None):
    """A study's model as the reports read it, from a hand-made (partial) summary.json."""
    from lume.reports import ModelEntry
    from lume.results import EvaluationSummary, UnlearnReport

    return ModelEntry(label, EvaluationSummary.from_json(summary), mia or [],
                      UnlearnReport.from_json(training) if training is not None else None)
