"""The released LUME targets as built-in names, with the Hugging Face hub mocked at the HTTP
boundary (no network here): a tiny OLMo-architecture model stands in for the weights."""

import json
import re

import pytest

from lume.errors import LumeError
from lume.models import load_model, resolve_model_path
from lume.models.released import RELEASED
from tests.conftest import model_entry

REPO = RELEASED["lume-olmo-1b"].repo
BASE = RELEASED["lume-olmo-1b"].base


def commit(repo: str) -> str:
    """Each repo's own commit hash, as on the hub."""
    import hashlib

    return hashlib.sha1(repo.encode()).hexdigest()


class FakeHub:
    """Serves repos {name: {file: bytes}} the way the hub's HTTP API does, for huggingface_hub."""

    def __init__(self, repos: dict, gated: bool = False, offline: bool = False):
        self.repos, self.gated, self.offline, self.requests = repos, gated, offline, []

    def __call__(self, request):
        import httpx2

        self.requests.append(f"{request.method} {request.url.path}")
        if self.offline:
            raise httpx2.ConnectError("no route to host", request=request)
        path = request.url.path
        api = re.match(r"^/api/models/(.+?/.+?)(?:/revision/[^/]+|/tree/[^/]+.*)?$", path)
        resolve = re.match(r"^/(.+?/.+?)/resolve/[^/]+/(.+)$", path)
        repo = (api or resolve).group(1)
        if self.gated:
            return httpx2.Response(403, headers={"X-Error-Code": "GatedRepo"}, text="gated", request=request)
        files = self.repos.get(repo)
        if files is None:
            return httpx2.Response(404, headers={"X-Error-Code": "RepoNotFound"}, request=request)
        if api and "/tree/" in path:
            return httpx2.Response(200, json=[{"type": "file", "path": f, "size": len(b), "oid": f"blob-{f}"}
                                              for f, b in files.items()], request=request)
        if api:
            return httpx2.Response(200, json={"id": repo, "sha": commit(repo), "siblings": [
                {"rfilename": f, "size": len(b)} for f, b in files.items()]}, request=request)
        body = files[resolve.group(2)]
        headers = {"X-Repo-Commit": commit(repo), "ETag": f'"etag-{resolve.group(2)}"',
                   "Content-Length": str(len(body))}
        return httpx2.Response(200, headers=headers, content=b"" if request.method == "HEAD" else body,
                               request=request)


def folder_files(folder) -> dict:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


@pytest.fixture(scope="module")
def olmo_files(tmp_path_factory, tokenizer):
    """A tiny OLMo-architecture checkpoint (weights and config) and, apart, its tokenizer files."""
    from transformers import OlmoConfig, OlmoForCausalLM

    config = OlmoConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    weights, tokens = tmp_path_factory.mktemp("olmo"), tmp_path_factory.mktemp("olmo-tokenizer")
    OlmoForCausalLM(config).save_pretrained(weights)
    tokenizer.save_pretrained(tokens)
    return folder_files(weights), folder_files(tokens)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """Install a fake hub; returns a function that sets what it serves."""
    import httpx2
    from huggingface_hub import set_client_factory

    monkeypatch.setenv("LUME_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")

    def serve(**kwargs) -> FakeHub:
        fake = FakeHub(**kwargs)
        set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(fake)))
        return fake

    yield serve
    set_client_factory(httpx2.Client)


def test_a_released_name_downloads_once_and_loads(hub, olmo_files):
    weights, tokens = olmo_files
    fake = hub(repos={REPO: {**weights, **tokens}})
    name, folder = resolve_model_path("lume-olmo-1b")
    assert name == "lume-olmo-1b" and (folder / "model.safetensors").is_file()
    assert json.loads((folder / "lume_source.json").read_text()) == {"hub": REPO, "tokenizer": REPO}
    loaded = load_model("lume-olmo-1b", device="cpu")
    assert type(loaded.model).__name__ == "OlmoForCausalLM" and loaded.name == "lume-olmo-1b"
    fake.requests.clear()
    assert resolve_model_path("lume-olmo-1b")[1] == folder and not fake.requests  # cached: no second download


def test_a_checkpoint_without_a_tokenizer_gets_its_base_models(hub, olmo_files):
    weights, tokens = olmo_files
    hub(repos={REPO: weights, BASE: {**tokens, "config.json": b"{}"}})
    folder = resolve_model_path("lume-olmo-1b")[1]
    assert (folder / "tokenizer.json").is_file()
    assert json.loads((folder / "lume_source.json").read_text())["tokenizer"] == BASE
    assert load_model(folder, device="cpu").tokenizer.eos_token_id is not None


@pytest.mark.parametrize("setup, message", [
    ({"gated": True}, "has not been granted access to " + REPO),
    ({"offline": True}, "cannot reach the Hugging Face hub (offline?)"),
])
def test_hub_failures_are_one_line(hub, olmo_files, setup, message):
    hub(repos={REPO: olmo_files[0]}, **setup)
    with pytest.raises(LumeError, match=re.escape(message)):
        resolve_model_path("lume-olmo-1b")


def test_no_token_says_how_to_get_one(hub, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    fake = hub(repos={})
    with pytest.raises(LumeError, match=r"lume-olmo-1b is gated .*set HF_TOKEN or run `hf auth login`"):
        resolve_model_path("lume-olmo-1b")
    assert not fake.requests  # refused before any request


def test_not_enough_disk_is_refused_before_downloading(hub, olmo_files, monkeypatch):
    import shutil
    from collections import namedtuple

    fake = hub(repos={REPO: {**olmo_files[0], **olmo_files[1]}})
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: namedtuple("usage", "total used free")(10, 10, 1000))
    with pytest.raises(LumeError, match=r"the checkpoint needs 0\.0 GB and .* has 0\.0 GB free"):
        resolve_model_path("lume-olmo-1b")
    assert not any("/resolve/" in r for r in fake.requests)


def test_not_enough_memory_for_the_dtype_is_refused_before_loading(tiny_model_dir, monkeypatch):
    import lume.models.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda device: 1000)
    with pytest.raises(LumeError, match=r"need about 0\.0 GB on cpu, and 0\.0 GB are free; choose a smaller --dtype"):
        load_model(tiny_model_dir, dtype="float32", device="cpu")
    monkeypatch.setattr(memory, "available_memory", lambda device: 10**12)
    assert load_model(tiny_model_dir, dtype="float32", device="cpu").model is not None


def test_a_study_on_a_released_target_unlearns_its_test_part_and_tunes_on_the_semeval_public_folds(
        hub, olmo_files, data_dir):
    from lume import data
    from lume.stages.unlearning import manifest_records
    from lume.study.config import TargetConfig
    from lume.study.course import build_target
    from lume.study.run import RunConfig

    hub(repos={REPO: {**olmo_files[0], **olmo_files[1]}})
    target = build_target(RunConfig(target=TargetConfig(model="lume-olmo-1b")))
    assert target.name == "lume-olmo-1b" and (target / "model.safetensors").is_file()
    release = data.load(data_dir)
    forget, retain = manifest_records(target, release)
    tuning_forget, tuning_retain = manifest_records(target, release, "tuning")
    public = sum(len(data.load(data_dir, fold).records) for fold in ("semeval-train", "semeval-validation"))
    assert len(tuning_forget) + len(tuning_retain) == public  # the SemEval public folds, every row
    assert len(forget) + len(tuning_forget) == 2732 and len(retain) + len(tuning_retain) == 2734


def test_the_report_shows_the_published_numbers_of_the_released_target_evaluated():
    from lume.reports.leaderboard import published

    def study(name):
        return [model_entry("target", {"model": {"name": name}})]

    one_b, own = "\n".join(published(study("lume-olmo-1b"))), "\n".join(published(study("target-abc")))
    assert "for this target (OLMo-1B" in one_b and "0.688" in one_b and "0.706" not in one_b
    assert "a different target, for scale" in own and "0.706" in own
