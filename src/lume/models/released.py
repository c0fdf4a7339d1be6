"""The released LUME targets, gated on the Hugging Face hub, as built-in model names.

`lume-olmo-7b` and `lume-olmo-1b` are downloaded once into lume's cache with the user's
token (`HF_TOKEN`, else the hub's saved login); a checkpoint without a tokenizer gets its base
model's. Every way a download fails is one line saying what to do.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lume.data.paths import cache_dir
from lume.errors import LumeError

TOKENIZER_PATTERNS = ["tokenizer*", "special_tokens_map.json", "vocab.json", "merges.txt"]
MODEL_PATTERNS = ["*.json", "*.safetensors", *TOKENIZER_PATTERNS]
COMPLETE = "lume_source.json"  # written last: the download is complete


@dataclass(frozen=True)
class ReleasedTarget:
    repo: str
    base: str  # the model it was fine-tuned from (tokenizer fallback)
    size: str  # "7B" or "1B": which published numbers are its

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}"


RELEASED = {
    "lume-olmo-7b": ReleasedTarget("llmunlearningsemeval2025organization/olmo-finetuned-semeval25-unlearning",
                                   "allenai/OLMo-7B-0724-Instruct-hf", "7B"),
    "lume-olmo-1b": ReleasedTarget("llmunlearningsemeval2025organization/olmo-1B-model-semeval25-unlearning",
                                   "allenai/OLMo-1B-0724-hf", "1B"),
}


def hub_token() -> str | None:
    """`HF_TOKEN`, else the token `hf auth login` saved."""
    from huggingface_hub import get_token

    return os.environ.get("HF_TOKEN") or get_token()


@contextmanager
def _hub_errors(name: str, target: ReleasedTarget, folder: Path):
    """The hub's failures as one line each."""
    import httpx2
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        yield
    except GatedRepoError:
        raise LumeError(f"{name}: your Hugging Face account has not been granted access to {target.repo}; "
                        f"request it at {target.url}, then run again") from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError, httpx2.TransportError):
        raise LumeError(f"{name}: cannot reach the Hugging Face hub (offline?); download {target.repo} on a "
                        "connected machine and pass its folder instead") from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        advice = "check HF_TOKEN or run `hf auth login` again" if status == 401 else str(error).splitlines()[0]
        raise LumeError(f"{name}: the Hugging Face hub refused the download (HTTP {status}): {advice}") from None
    except OSError as error:
        if error.errno == 28:  # ENOSPC
            raise LumeError(f"{name}: the disk filled up while downloading into {folder}") from None
        raise


def _check_disk(name: str, api, target: ReleasedTarget, token: str, folder: Path) -> None:
    """Refuse before downloading when the cache's disk cannot hold the checkpoint."""
    info = api.model_info(target.repo, token=token, files_metadata=True)
    needed = sum(sibling.size or 0 for sibling in info.siblings or [])
    folder.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder.parent).free
    if needed > free:
        raise LumeError(f"{name}: the checkpoint needs {needed / 1e9:.1f} GB and {folder.parent} has "
                        f"{free / 1e9:.1f} GB free; free some space or set LUME_CACHE to a larger disk")


def fetch_released(name: str) -> Path:
    """The released target's folder in lume's cache, downloaded the first time."""
    from huggingface_hub import HfApi, snapshot_download

    target, folder = RELEASED[name], cache_dir() / "models" / name
    if (folder / COMPLETE).is_file():
        return folder
    token = hub_token()
    if token is None:
        raise LumeError(f"{name} is gated on the Hugging Face hub: request access at {target.url}, then set "
                        "HF_TOKEN or run `hf auth login`")
    staging = folder.with_name(folder.name + ".download")  # kept between attempts: downloads resume
    with _hub_errors(name, target, staging):
        _check_disk(name, HfApi(), target, token, folder)
        snapshot_download(target.repo, local_dir=staging, token=token, allow_patterns=MODEL_PATTERNS)
        tokenizer_from = target.repo
        if not any(staging.glob("tokenizer*")):  # the checkpoint ships none: its base model's
            snapshot_download(target.base, local_dir=staging, token=token, allow_patterns=TOKENIZER_PATTERNS)
            tokenizer_from = target.base
    (staging / COMPLETE).write_text(json.dumps({"hub": target.repo, "tokenizer": tokenizer_from}))
    os.replace(staging, folder)
    return folder
