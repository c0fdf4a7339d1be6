"""IdkDPO (Maini et al., 2024, TOFU): DPO that prefers a refusal over the forget answer:

    L = −mean_F log σ(β · [(log π_θ(idk|x) − log π_ref(idk|x)) − (log π_θ(y|x) − log π_ref(y|x))])
        + α · NLL_θ(R)

Both reference terms are fixed, so they are computed once before training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from lume.training import prompt_answer_example
from lume.stages.unlearning.methods.base import Method, nll, register, sequence_log_likelihood

REFUSALS = ("I don't know.", "I'm not sure.", "I have no idea.", "I can't answer that.",
            "That is not something I know.", "I don't have that information.")


@dataclass
class IdkSettings:
    beta: float = 0.1
    alpha: float = 1.0


@register
class IdkDPO(Method):
    name = "idk"
    Settings = IdkSettings

    def prepare(self, context):
        refusals = [prompt_answer_example(context.tokenizer, example.prompt, REFUSALS[i % len(REFUSALS)])
                    for i, example in enumerate(context.forget_examples)]
        context.precomputed["idk_examples"] = refusals
        context.precomputed["idk_reference"] = context.forget_log_likelihoods(refusals)
        context.precomputed["forget_reference"] = context.forget_log_likelihoods()

    def loss(self, context, forget, retain):
        index = forget["index"]
        refusals = context.collate([context.precomputed["idk_examples"][i] for i in index.tolist()])
        chosen, _ = sequence_log_likelihood(context.model, refusals)
        rejected, _ = sequence_log_likelihood(context.model, forget)
        reference = context.precomputed
        margin = (chosen - reference["idk_reference"][index]) - (rejected - reference["forget_reference"][index])
        preference = F.softplus(-self.settings.beta * margin).mean()
        retain_nll = nll(context.model, retain)
        return preference + self.settings.alpha * retain_nll, {"dpo": preference.item(),
                                                               "retain_nll": retain_nll.item()}


