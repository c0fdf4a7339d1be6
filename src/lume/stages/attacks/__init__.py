"""Is it really forgotten? Relearning, quantisation and probing attacks on an unlearned model.

Each attack is followed by the standard per-item scoring, and reported as the recovered
fraction of what unlearning removed, per task and metric of the forget set:

    recovered = (after_attack − unlearned) / (target − unlearned)

(None where unlearning removed nothing), beside the change on the retain set and on MMLU.

- `relearn`: a few fine-tuning steps on the QA rows of half of the forget documents; scored
  on the other half only, so it measures recovery, not re-training (the halves never share a
  document). `relearn-public`: the same steps on public Wikipedia text (the SemEval MIA
  non-members) that shares no document with LUME.
- `quantize-8`, `quantize-4`: round-to-nearest, symmetric, per-output-channel weight
  quantisation of every linear layer (the weights are rounded, then stored dequantised).
- `probe`: the questions asked in other forms: sc prompts cut a third earlier (scored
  against the longer true continuation), QA with an instruction prefix, and QA answers scored
  by containment instead of exact match. The official scores are untouched; these are extra.
"""

import importlib
import pkgutil

from lume.stages.attacks.base import ATTACKS, RESULT_NAME, Attack, AttackConfig, Attacker, step_key

for _module in pkgutil.iter_modules(__path__):  # every attack file here registers its attacks
    importlib.import_module(f"{__name__}.{_module.name}")

from lume.stages.attacks.run import attack, check_attacks  # noqa: E402

__all__ = ["ATTACKS", "RESULT_NAME", "Attack", "AttackConfig", "Attacker", "attack", "check_attacks", "step_key"]
