"""Download the public LUME release into the user cache, checking every byte."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from lume.data.paths import data_cache_dir
from lume.errors import LumeError

RELEASE_URL = "https://raw.githubusercontent.com/amazon-science/lume-llm-unlearning/main/data/"
# sha256 of the latest release files (the one with the SemEval validation rows, no split field).
RELEASE_FILES = {
    "forget.jsonl": "3a74f30223c35b173664dfea5b1c5939587f1eac868a9764891f30c2c317c381",
    "retain.jsonl": "ec8826a91d9fb9e5a50ba732549e8eff75fc99c2f67d6873d1ea36fd403a003d",
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_release(target: Path | None = None, base_url: str = RELEASE_URL) -> Path:
    """Download forget/retain into TARGET/lume (default: the cache) and return TARGET.

    Each file lands under a temporary name and is renamed only once its checksum matches,
    so a broken download never passes for the release.
    """
    target = target or data_cache_dir()
    folder = target / "lume"
    folder.mkdir(parents=True, exist_ok=True)
    for name, expected in RELEASE_FILES.items():
        final = folder / name
        if final.is_file() and sha256_of(final) == expected:
            continue
        partial = final.with_suffix(".part")
        url = base_url + name
        try:
            with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
                while block := response.read(1 << 20):
                    out.write(block)
        except (urllib.error.URLError, OSError) as error:
            partial.unlink(missing_ok=True)
            reason = getattr(error, "reason", error)
            raise LumeError(f"cannot download {url} ({reason}); are you offline? Point "
                            "--data-dir or LUME_DATA_DIR at a copy of the data instead") from None
        actual = sha256_of(partial)
        if actual != expected:
            partial.unlink()
            raise LumeError(f"{url}: checksum mismatch (got {actual[:12]}…, expected "
                            f"{expected[:12]}…); the release may have changed upstream")
        partial.replace(final)
    return target
