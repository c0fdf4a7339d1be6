"""Quantisation: round-to-nearest, symmetric, per-output-channel weights of every linear layer
(`quantize-8`, `quantize-4`), stored dequantised; every document measured."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from lume.results import AttackResult
from lume.stages.attacks.base import ATTACKS, Attack, Attacker


def quantize_weights(model, bits: int):
    """Round every linear weight to `bits` bits, symmetric per output channel, in place
    (GPT-2's Conv1D layers too, whose weights are stored transposed)."""
    from transformers.pytorch_utils import Conv1D

    levels = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, Conv1D)):
                weight = module.weight
                input_dim = 1 if isinstance(module, torch.nn.Linear) else 0
                scale = weight.abs().amax(dim=input_dim, keepdim=True).clamp(min=1e-12) / levels
                weight.copy_((weight / scale).round().clamp(-levels, levels) * scale)
    return model


@ATTACKS.register
class Quantize8(Attack):
    """Round every linear weight to 8 bits (per output channel); measure every document."""

    name, bits = "quantize-8", 8

    def run(self, attacker: Attacker, out_dir: Path) -> AttackResult:
        return attacker.report(quantize_weights(copy.deepcopy(attacker.unlearned.model), self.bits),
                               attacker.forget + attacker.retain)


@ATTACKS.register
class Quantize4(Quantize8):
    name, bits = "quantize-4", 4


