"""One fixed, seeded tiny study (a random Llama on a tokenizer trained on LUME text; a smoke
target with its oracle; gd and npo with probes and `select: best`; quantize-4 and relearn
attacks), its JSON outputs copied to OUT/files: run it on two versions of lume and compare
them with `bench/same_outputs.py` to show a refactor changed no result.

    python bench/fixed_study.py /tmp/before      # on the old checkout (PYTHONPATH=its src)
    python bench/fixed_study.py /tmp/after
    python bench/same_outputs.py /tmp/before /tmp/after

Both runs must use the same OUT path (paths enter the target's cache key): run, move the
folder aside, run again."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for the tiny model and MMLU folder

from lume.data.paths import resolve_data_dir  # noqa: E402
from lume.study.run import load_config, run  # noqa: E402
from tests import conftest  # noqa: E402
from tests.test_mmlu import make_mmlu  # noqa: E402


def main(out: Path) -> None:
    work = out / "work"
    shutil.rmtree(out, ignore_errors=True)
    work.mkdir(parents=True)
    data_dir = resolve_data_dir()
    tokenizer = conftest.tokenizer.__wrapped__(data_dir)
    conftest.make_tiny_model(tokenizer).save_pretrained(work / "tiny")
    tokenizer.save_pretrained(work / "tiny")
    quiet = {"progress": False}
    config = {
        "name": "fixed", "out": str(work / "run"), "data_dir": str(data_dir),
        "target": {"preset": "smoke", "oracle": True,
                   "memorize": {"base": str(work / "tiny"), "max_epochs": 1, "docs_per_task": 2, **quiet}},
        "methods": [{"method": "gd", "steps": 2, "training": {"learning_rate": 1e-3}, **quiet},
                    {"method": "npo", "name": "npo-strong", "steps": 2, "training": {"learning_rate": 1e-3},
                     "method_settings": {"beta": 0.5}, "eval_every": 1, "select": "best", **quiet}],
        "evaluation": {"mia_set": "validation", "mmlu_dir": str(make_mmlu(work / "mmlu")), "max_new_tokens": 8,
                       **quiet},
        "attacks": ["quantize-4", "relearn"], "attack": {"mmlu": False, "relearn_steps": 2, **quiet},
    }
    (work / "study.yaml").write_text(yaml.safe_dump(config))
    os.environ["LUME_CACHE"] = str(work / "cache")
    run(load_config(work / "study.yaml"))
    for path in sorted((work / "run").rglob("*.json")):
        copy = out / "files" / path.relative_to(work / "run")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy)
    print(f"{len(list((out / 'files').rglob('*.json')))} JSON files in {out / 'files'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
