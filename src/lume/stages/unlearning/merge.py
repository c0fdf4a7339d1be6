"""`merge`: combine LoRA adapters trained from one base model (TIES or a weighted sum).

The 7B runner-up of SemEval-2025 Task 4 merged an over-forgetting and an under-forgetting
model; peft's `add_weighted_adapter` does the arithmetic.
"""

from __future__ import annotations

from pathlib import Path

from lume.errors import LumeError
from lume.files import check_output_dir
from lume.models import load_model, resolve_model_path, save_model

COMBINATIONS = {"ties": "ties", "linear": "linear", "sum": "linear"}


def merge_adapters(base: str | Path, adapters: list[str | Path], out_dir: str | Path, *,
                   combination: str = "ties", weights: list[float] | None = None, density: float = 0.5,
                   overwrite: bool = False) -> Path:
    """Merge the adapters (folders saved by `unlearn --lora-rank`) into BASE and save a full model.

    OUT must not hold the base model, an adapter or other results (unless `overwrite`).
    """
    from peft import PeftModel

    if combination not in COMBINATIONS:
        raise LumeError(f"unknown combination {combination!r} (choose from {', '.join(COMBINATIONS)})")
    if not 0 < density <= 1:
        raise LumeError(f"density must be above 0 and at most 1, got {density}")
    if len(adapters) < 2:
        raise LumeError("give at least two adapters to merge")
    weights = weights or [1.0 / len(adapters)] * len(adapters)
    if len(weights) != len(adapters):
        raise LumeError(f"{len(weights)} weights for {len(adapters)} adapters")
    for adapter in adapters:
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise LumeError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    out_dir = check_output_dir(out_dir, inputs=(resolve_model_path(base)[1], *adapters), overwrite=overwrite)
    loaded = load_model(base, dtype="float32", device="cpu")
    names = [f"adapter{i}" for i in range(len(adapters))]
    model = PeftModel.from_pretrained(loaded.model, str(adapters[0]), adapter_name=names[0])
    for name, adapter in zip(names[1:], adapters[1:]):
        model.load_adapter(str(adapter), adapter_name=name)
    extra = {"density": density} if COMBINATIONS[combination] == "ties" else {}
    model.add_weighted_adapter(names, weights, "merged", combination_type=COMBINATIONS[combination], **extra)
    model.set_adapter("merged")
    merged = model.merge_and_unload()
    save_model(merged, loaded.tokenizer, out_dir)
    return out_dir
