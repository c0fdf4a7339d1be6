"""Mixed precision chosen by the hardware: bf16 autocast only where the device computes bf16 natively.

On CPUs without AVX512-BF16 or AMX (most laptops and cloud machines: AVX2 only) torch emulates
bf16, and a matmul under bf16 autocast runs tens of times slower than in float32. `auto`, the
default of every stage that trains, therefore picks bf16 on a CUDA GPU that supports it and on
a CPU where torch reports native bf16, and float32 ("no") everywhere else; fp16 only when asked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

CHOICES = ("auto", "bf16", "fp16", "no")
NAMES = {"bf16": "bf16 autocast", "fp16": "fp16 autocast", "no": "float32"}


def device_type(cpu: bool) -> str:
    """The kind of device a training stage runs on (accelerate puts it on the GPU when there is one)."""
    return "cuda" if torch.cuda.is_available() and not cpu else "cpu"


def cpu_capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


def native_bf16(kind: str) -> bool:
    """Whether `kind` ("cuda" or "cpu") computes bf16 in hardware; tests replace this seam."""
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    if kind == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # AVX512-BF16 or AMX, as oneDNN sees it
    return False


def bf16_slowdown(seconds: float = 0.05) -> float:
    """How many times slower a matmul runs under CPU bf16 autocast than in float32, timed now."""
    left, right = torch.randn(256, 576), torch.randn(576, 768)

    def rate(autocast: bool) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            left @ right  # warm-up
            started, runs = time.perf_counter(), 0
            while time.perf_counter() - started < seconds / 2:
                left @ right
                runs += 1
        return runs / (time.perf_counter() - started)

    return rate(False) / rate(True)


@dataclass(frozen=True)
class Precision:
    """What a stage trains in (accelerate's name: bf16, fp16 or no), what was asked, and why."""

    used: str
    asked: str
    reason: str

    def line(self) -> str:
        return f"mixed precision: {NAMES[self.used]} ({self.reason})"

    def record(self) -> dict:
        return {"mixed_precision": self.used, "asked": self.asked, "reason": self.reason}


def _device_words(kind: str) -> str:
    return f"this CPU ({cpu_capability()})" if kind == "cpu" else f"this {kind} device"


def choose(asked: str, cpu: bool = False) -> Precision:
    """The precision `asked` resolves to on this machine's training device; `auto` by the hardware.

    An explicit bf16 on a CPU that emulates it runs as asked, with the slowdown measured now in its reason.
    """
    kind = device_type(cpu)
    native = native_bf16(kind)
    if asked == "auto":
        used = "bf16" if native else "no"
        verb = "computes bf16 natively" if native else "has no native bf16 (it would be emulated, far slower)"
        return Precision(used, asked, f"auto: {_device_words(kind)} {verb}")
    if asked == "bf16" and kind == "cpu" and not native:
        return Precision(asked, asked, f"asked for; {_device_words(kind)} emulates bf16: a matmul runs "
                                       f"{bf16_slowdown():.0f}x slower than in float32 here (auto would pick float32)")
    return Precision(asked, asked, "asked for")


def chosen_mixed_precision(asked: str, device: str | None) -> str:
    """What `asked` resolves to for a stage run with `device` (None or "cpu"): for keys of cached
    results, which must differ when the precision that decides the weights differs."""
    return choose(asked, cpu=device == "cpu").used if asked == "auto" else asked
