"""`merge`: combine LoRA adapters trained from one base model (TIES or a weighted sum).

The 7B runner-up of SemEval-2025 Task 4 merged an over-forgetting and an under-forgetting
model; peft's `add_weighted_adapter` does the arithmetic.
"""

from __future__ import annotations

from pathlib import Path

from lume.errors import LumeError
from lume.models import load_model

COMBINATIONS = {"ties": "ties", "linear": "linear", "sum": "linear"}


def merge_adapters(base: str | Path, adapters: list[str | Path], out_dir: str | Path, *,
                   combination: str = "ties", weights: list[float] | None = None, density: float = 0.5) -> Path:
    """Merge the adapters (folders saved by `unlearn --lora-rank`) into BASE and save a full model."""
    from peft import PeftModel

    if combination not in COMBINATIONS:
        raise LumeError(f"unknown combination {combination!r} (choose from {', '.join(COMBINATIONS)})")
    if len(adapters) < 2:
        raise LumeError("give at least two adapters to merge")
    weights = weights or [1.0 / len(adapters)] * len(adapters)
    if len(weights) != len(adapters):
        raise LumeError(f"{len(weights)} weights for {len(adapters)} adapters")
    loaded = load_model(base, dtype="float32", device="cpu")
    names = [f"adapter{i}" for i in range(len(adapters))]
    model = PeftModel.from_pretrained(loaded.model, str(adapters[0]), adapter_name=names[0])
    for name, adapter in zip(names[1:], adapters[1:]):
        model.load_adapter(str(adapter), adapter_name=name)
    extra = {"density": density} if COMBINATIONS[combination] == "ties" else {}
    model.add_weighted_adapter(names, weights, "merged", combination_type=COMBINATIONS[combination], **extra)
    model.set_adapter("merged")
    merged = model.merge_and_unload()
    out_dir = Path(out_dir)
    merged.save_pretrained(out_dir, safe_serialization=True)
    loaded.tokenizer.save_pretrained(out_dir)
    return out_dir
