"""RMU, Representation Misdirection for Unlearning (Li et al., 2024, WMDP):

    L = mean_F ‖h_θ^ℓ(x) − c·u‖²  +  α · mean_R ‖h_θ^ℓ(x) − h_ref^ℓ(x)‖²

h^ℓ is the output of decoder layer ℓ itself, read with a forward hook (the model's last
`hidden_states` entry is taken after the final norm, not the last layer's output), u a fixed
random unit vector, c its scale; ‖·‖² is averaged over the hidden size. `tokens` says which
tokens the means run over: "all" (default, the paper's: every real token, prompt included,
pooled over the batch; a LUME prompt is part of its document) or "answer" (open-unlearning's:
the answer tokens, per sequence, then over the batch). Only the MLPs of layers ℓ−2..ℓ are
trained (the paper's choice), so everything above ℓ is left as it was. The decoder layers and
their MLPs are found from the model's structure (Llama's `layers.N.mlp`, GPT-2's `h.N.mlp`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lume.config import one_of
from lume.errors import LumeError
from lume.inference.batching import IGNORE
from lume.stages.unlearning.methods.base import Method, register

TOKEN_SETS = ("all", "answer")


@dataclass
class RMUSettings:
    layer: int = 7
    steering_coefficient: float = 6.5  # c
    alpha: float = 1200.0  # retain weight
    seed: int = 0
    tokens: str = "all"  # all (every real token, pooled) or answer (answer tokens, per sequence)

    def __post_init__(self):
        one_of(self, "tokens", TOKEN_SETS)


def decoder_layers(model) -> list[tuple[str, torch.nn.Module]]:
    """(name, module) of each decoder layer: the model's list with one block per hidden layer."""
    inner = model
    while not hasattr(inner, "config") and hasattr(inner, "module"):  # a DDP wrapper has no config
        inner = inner.module
    count = inner.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return [(f"{name}.{index}", layer) for index, layer in enumerate(module)]
    raise LumeError(f"rmu: cannot find the {count} decoder layers of {type(model).__name__}")


def mlp_prefix(layer_name: str, layer: torch.nn.Module) -> str:
    """The parameter-name prefix of a decoder layer's MLP block."""
    for child_name, _ in layer.named_children():
        if any(key in child_name.lower() for key in ("mlp", "feed_forward", "ffn")):
            return f"{layer_name}.{child_name}."
    raise LumeError(f"rmu: decoder layer {layer_name} ({type(layer).__name__}) has no MLP block "
                    "(a child named mlp, feed_forward or ffn); RMU cannot apply to this model")


def layer_output(model, batch: dict, layer: int) -> torch.Tensor:
    """The output of decoder layer `layer` on the batch, as the layer returned it."""
    captured = []

    def keep(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = decoder_layers(model)[layer][1].register_forward_hook(keep)
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        handle.remove()
    return captured[0]


def masked_mse(values: torch.Tensor, target: torch.Tensor, batch: dict, tokens: str) -> torch.Tensor:
    """‖values − target‖² averaged over the hidden size, then over the token set `tokens`."""
    per_token = (values.float() - target.float()).square().mean(-1)
    if tokens == "all":
        mask = batch["attention_mask"]
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    mask = batch["labels"] != IGNORE
    return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()


@register
class RMU(Method):
    name = "rmu"
    Settings = RMUSettings
    needs_reference_model = True
    leaves_weights_without_gradient = True  # nothing above layer ℓ (with LoRA: its adapters) is reached

    def select_parameters(self, model) -> None:
        count = model.config.num_hidden_layers
        if not 0 <= self.settings.layer < count:
            raise LumeError(f"rmu: layer {self.settings.layer} does not exist (the model has {count} layers)")
        blocks = decoder_layers(model)[max(0, self.settings.layer - 2):self.settings.layer + 1]
        wanted = tuple(mlp_prefix(name, layer) for name, layer in blocks)
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith(wanted)

    def prepare(self, context):
        hidden = context.model.config.hidden_size
        generator = torch.Generator().manual_seed(self.settings.seed)
        direction = torch.rand(hidden, generator=generator)
        context.precomputed["rmu_control"] = self.settings.steering_coefficient * direction / direction.norm()

    def loss(self, context, forget, retain):
        layer = self.settings.layer
        forget_hidden = layer_output(context.model, forget, layer)
        control = context.precomputed["rmu_control"].to(forget_hidden.device)
        tokens = self.settings.tokens
        forget_term = masked_mse(forget_hidden, control.expand_as(forget_hidden), forget, tokens)
        with context.starting_model() as reference:
            retain_reference = layer_output(reference, retain, layer)
        retain_term = masked_mse(layer_output(context.model, retain, layer), retain_reference, retain, tokens)
        loss = forget_term + self.settings.alpha * retain_term
        return loss, {"forget_mse": forget_term.item(), "retain_mse": retain_term.item()}
