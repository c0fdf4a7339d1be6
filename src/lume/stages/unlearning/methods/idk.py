"""IdkDPO (Maini et al., 2024, TOFU): DPO with a general refusal set, preferring a refusal over
the forget answer:

    L = s · mean_F −log σ(β · [(log π_θ(idk|x) − log π_ref(idk|x)) − (log π_θ(y|x) − log π_ref(y|x))])
        + α · NLL_θ(R)

with log π summed over answer tokens and s = 1 (`scaling: dpo`, the DPO and TOFU papers') or
s = 2/β (`scaling: 2/beta`, open-unlearning's, 20x at β = 0.1). The refusals are a built-in
set, or one per line of `refusals_file` (TOFU's `idontknow` list, say), taken in turn.
Both reference terms are fixed, so they are computed once before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch.nn.functional as F

from lume.config import check_settings, setting
from lume.errors import LumeError
from lume.stages.unlearning.methods.base import Method, nll, register, sequence_log_likelihood
from lume.training import prompt_answer_example

REFUSALS = ("I don't know.", "I'm not sure.", "I have no idea.", "I can't answer that.",
            "That is not something I know.", "I don't have that information.")


SCALINGS = {"dpo": lambda beta: 1.0, "2/beta": lambda beta: 2 / beta}


@dataclass
class IdkSettings:
    beta: float = setting(0.1, "β, the preference loss's temperature", above=0)
    alpha: float = setting(1.0, "Weight of the retain NLL", at_least=0)
    scaling: str = setting("dpo", "dpo (s = 1) or 2/beta (s = 2/β, as open-unlearning)", choices=SCALINGS)
    refusals_file: str | None = setting(None, "One refusal a line; None = the built-in set")

    def __post_init__(self):
        check_settings(self)


def refusals(settings: IdkSettings) -> list[str]:
    """The refusal texts: the built-in set, or the non-empty lines of `refusals_file`."""
    if settings.refusals_file is None:
        return list(REFUSALS)
    path = Path(settings.refusals_file)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise LumeError(f"{path}: cannot read the refusals file ({error})") from None
    if not lines:
        raise LumeError(f"{path}: the refusals file has no refusal (one a line)")
    return lines


@register
class IdkDPO(Method):
    """Preference optimisation of a chosen answer over the forget answer; the chosen answers
    (here refusals) and the term's scale are what a subclass changes (AltPO)."""

    name = "idk"
    Settings = IdkSettings
    log_name = "dpo"

    def chosen_answers(self, context) -> list[str]:
        """The preferred answer of each forget example, in order."""
        texts = refusals(self.settings)
        return [texts[i % len(texts)] for i in range(len(context.forget_examples))]

    def scale(self) -> float:
        return SCALINGS[self.settings.scaling](self.settings.beta)

    def prepare(self, context):
        examples = [prompt_answer_example(context.tokenizer, example.prompt, answer)
                    for example, answer in zip(context.forget_examples, self.chosen_answers(context))]
        context.precomputed["chosen_examples"] = examples
        context.precomputed["chosen_reference"] = context.forget_log_likelihoods(examples)
        context.precomputed["forget_reference"] = context.forget_log_likelihoods()

    def loss(self, context, forget, retain):
        index = forget["index"]
        preferred = context.collate([context.precomputed["chosen_examples"][i] for i in index.tolist()])
        chosen, _ = sequence_log_likelihood(context.model, preferred)
        rejected, _ = sequence_log_likelihood(context.model, forget)
        reference = context.precomputed
        margin = (chosen - reference["chosen_reference"][index]) - (rejected - reference["forget_reference"][index])
        preference = self.scale() * F.softplus(-self.settings.beta * margin).mean()
        retain_nll = nll(context.model, retain)
        return preference + self.settings.alpha * retain_nll, {self.log_name: preference.item(),
                                                               "retain_nll": retain_nll.item()}


