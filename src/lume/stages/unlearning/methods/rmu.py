"""RMU, Representation Misdirection for Unlearning (Li et al., 2024, WMDP):

    L = mean_F ‖h_θ^ℓ(x) − c·u‖²  +  α · mean_R ‖h_θ^ℓ(x) − h_ref^ℓ(x)‖²

h^ℓ is the output of decoder layer ℓ, u a fixed random unit vector, c its scale. Only the MLPs
of layers ℓ−2..ℓ are trained (the paper's choice), so everything above ℓ is left as it was.
The decoder layers and their MLPs are found from the model's structure (Llama's `layers.N.mlp`,
GPT-2's `h.N.mlp`, ...), not from one architecture's names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lume.errors import LumeError
from lume.stages.unlearning.methods.base import Method, register


@dataclass
class RMUSettings:
    layer: int = 7
    steering_coefficient: float = 6.5  # c
    alpha: float = 1200.0  # retain weight
    seed: int = 0


def decoder_layers(model) -> list[tuple[str, torch.nn.Module]]:
    """(name, module) of each decoder layer: the model's list with one block per hidden layer."""
    count = model.config.num_hidden_layers
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
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    return outputs.hidden_states[layer + 1]  # [0] is the embeddings


def masked_mse(values: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    per_token = (values.float() - target.float()).square().mean(-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


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
        forget_term = masked_mse(forget_hidden, control.expand_as(forget_hidden), forget["attention_mask"])
        with context.starting_model() as reference:
            retain_reference = layer_output(reference, retain, layer)
        retain_term = masked_mse(layer_output(context.model, retain, layer), retain_reference, retain["attention_mask"])
        loss = forget_term + self.settings.alpha * retain_term
        return loss, {"forget_mse": forget_term.item(), "retain_mse": retain_term.item()}
