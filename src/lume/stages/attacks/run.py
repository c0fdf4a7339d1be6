"""`attack`: the named attacks on an unlearned model, written to OUT/attacks.json."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from lume import data as lume_data
from lume.data import LumeData
from lume.data.manifest import read_manifest
from lume.errors import LumeError
from lume.files import write_json_atomic
from lume.models import load_model
from lume.outputs import UNFINISHED_NAME, claim, mark_finished, one_writer, refuse_overwriting_inputs
from lume.results import AttackResults
from lume.stages.attacks.base import ATTACKS, RESULT_NAME, AttackConfig, Attacker, split_for_relearning


def check_attacks(attacks: list[str]) -> None:
    """Each a registered attack or `package.module:Class`; an unknown one is refused naming the choices."""
    for name in attacks:
        ATTACKS[name]


def attack(model_dir: str | Path, target_dir: str | Path, out_dir: str | Path, attacks: list[str],
           config: AttackConfig | None = None, *, overwrite: bool = False, wait: bool = False,
           data: LumeData | None = None) -> AttackResults:
    """Run the attacks on an unlearned model and write OUT/attacks.json.

    OUT must not hold either model or finished results (unless `overwrite`); while another
    command writes it, this one stops (or waits, with `wait`). DATA: the data already loaded (a
    study's); None: config.data_dir's.
    """
    config = config or AttackConfig()
    check_attacks(attacks)
    refuse_overwriting_inputs(out_dir, (model_dir, target_dir))
    manifest = read_manifest(model_dir) or read_manifest(target_dir)
    if manifest is None:
        raise LumeError(f"{model_dir}: no lume_target.json here or in the target; attacks need its documents")
    with one_writer(out_dir, wait):
        out_dir = claim(out_dir, "attack", inputs=(model_dir, target_dir), overwrite=overwrite,
                        resumable=lambda folder: all(e.name in (*ATTACKS, UNFINISHED_NAME) for e in folder.iterdir()))
        results = _attacked(Path(model_dir), Path(target_dir), out_dir, attacks, config, manifest,
                            lume_data.loaded(data or config.data_dir))
        write_json_atomic(out_dir / RESULT_NAME, results.to_json())
        mark_finished(out_dir)
    return results


def _check_relearnable(selection, attacks: list[str], seed: int) -> None:
    """`relearn` trains on half of each task's forget documents and measures the other half:
    a task with one forget document leaves nothing to relearn from, refused before any work."""
    if "relearn" not in attacks:
        return
    relearned, _ = split_for_relearning(selection.split("forget"), seed)
    missing = sorted({d.task for d in selection.split("forget")} - {d.task for d in relearned})
    if missing:
        raise LumeError(f"the relearn attack needs at least 2 forget documents per task (half relearned, half "
                        f"measured); the target has 1 in {', '.join(missing)}")


def _attacked(model_dir: Path, target_dir: Path, out_dir: Path, attacks: list[str], config: AttackConfig,
              manifest, dataset: LumeData) -> AttackResults:
    selection = manifest.selection(dataset.documents).part("test")  # a study's documents
    _check_relearnable(selection, attacks, config.seed)
    attacker = Attacker(load_model(model_dir, dtype="float32", device=None),
                        load_model(target_dir, dtype="float32", device=None), selection, config, dataset.data_dir)
    started = time.time()
    baseline = {**attacker.baseline(attacker.forget + attacker.retain), "unlearned_mmlu": attacker.unlearned_mmlu}
    results = {name: ATTACKS[name]().run(attacker, out_dir) for name in attacks}
    return AttackResults(model=str(model_dir), target=str(target_dir), config=asdict(config), attacks=results,
                         baseline=baseline, seconds=time.time() - started)
