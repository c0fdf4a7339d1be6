"""`merge`: combine LoRA adapters trained from one base model (TIES or a weighted sum).

The 7B runner-up of SemEval-2025 Task 4 merged an over-forgetting and an under-forgetting
model; peft's `add_weighted_adapter` does the arithmetic.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lume.config import check_settings, setting
from lume.errors import LumeError
from lume.files import utf8_path, write_json_atomic
from lume.models import load_model, resolve_model_path, save_model
from lume.outputs import FINISHED_MARKERS, claim, mark_finished, one_writer

COMBINATIONS = {"ties": "ties", "linear": "linear", "sum": "linear"}


@dataclass
class MergeConfig:
    combination: str = setting("ties", "ties, or linear (a weighted sum; sum is the same)", choices=COMBINATIONS)
    weights: list[float] | None = setting(None, "Weights, one per adapter; None = equal weights")
    density: float = setting(0.5, "TIES: the share of each adapter's weights kept", above=0, between=(0, 1))

    def __post_init__(self):
        check_settings(self)


def merge_adapters(base: str | Path, adapters: list[str | Path], out_dir: str | Path,
                   config: MergeConfig | None = None, *, overwrite: bool = False, wait: bool = False) -> Path:
    """Merge the adapters (folders saved by `unlearn --lora-rank`) into BASE and save a full model
    with `lume_merge.json` (what was merged, how).

    OUT must not hold the base model, an adapter or other results (unless `overwrite`); while
    another command writes it, this one stops (or waits, with `wait`).
    """
    config = config or MergeConfig()
    check_adapters(adapters, config)
    with one_writer(out_dir, wait):
        out_dir = claim(out_dir, "merge", inputs=(resolve_model_path(base)[1], *adapters), overwrite=overwrite)
        record = merge_into(base, adapters, out_dir, config)
        write_json_atomic(out_dir / FINISHED_MARKERS["merge"], record)
        mark_finished(out_dir)
    return out_dir


def check_adapters(adapters: list, config: MergeConfig) -> None:
    """At least two adapter folders, as many weights as adapters (when given)."""
    if len(adapters) < 2:
        raise LumeError("give at least two adapters to merge")
    if config.weights is not None and len(config.weights) != len(adapters):
        raise LumeError(f"{len(config.weights)} weights for {len(adapters)} adapters")
    for adapter in adapters:
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise LumeError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")


def merge_into(base, adapters: list, out_dir: Path, config: MergeConfig) -> dict:
    """Merge the adapters into BASE and save the full model in OUT_DIR (already claimed); what
    was merged, how."""
    weights = config.weights or [1.0 / len(adapters)] * len(adapters)
    _merge(base, adapters, out_dir, config.combination, weights, config.density)
    return {"base": str(base), "adapters": [str(a) for a in adapters], "combination": COMBINATIONS[config.combination],
            "weights": weights, "density": config.density}


def _merge(base, adapters: list, out_dir: Path, combination: str, weights: list[float], density: float) -> None:
    from peft import PeftModel

    loaded = load_model(base, dtype="float32", device="cpu")
    names = [f"adapter{i}" for i in range(len(adapters))]
    with _fitting(adapters[0], base), utf8_path(adapters[0]) as first:
        model = PeftModel.from_pretrained(loaded.model, str(first), adapter_name=names[0])
    for name, adapter in zip(names[1:], adapters[1:]):
        with _fitting(adapter, base), utf8_path(adapter) as readable:
            model.load_adapter(str(readable), adapter_name=name)
    extra = {"density": density} if COMBINATIONS[combination] == "ties" else {}
    model.add_weighted_adapter(names, weights, "merged", combination_type=COMBINATIONS[combination], **extra)
    model.set_adapter("merged")
    merged = model.merge_and_unload()
    save_model(merged, loaded.tokenizer, out_dir)


@contextmanager
def _fitting(adapter, base):
    """An adapter trained on another base (its weights' shapes differ) is one line, not torch's
    list of every mismatched tensor."""
    try:
        yield
    except RuntimeError as error:
        if "size mismatch" not in str(error):
            raise
        raise LumeError(f"{adapter}: its weights do not fit the base model {base} (trained on another base?); "
                        "merge adapters onto the model they were trained from") from None
