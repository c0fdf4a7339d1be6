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

Adaptive RMU (`adaptive_scale` > 0; Dang et al., 2025, as the SemEval-2025 team Mr. Snuffleupagus
used it): one random direction u_k per task k, scaled to c_k = adaptive_scale · the mean norm
of the task's forget activations at layer ℓ (‖h^ℓ_θ‖ over the token set, averaged per example,
then over the task's forget examples), measured on the model as it is at the start of each
epoch; each forget row is steered towards its own task's c_k·u_k. The coefficients are kept in
every checkpoint. `norms_from: first-batch` measures as the team's unlearn_submission.py does:
on the task's first batch only, every position of the padded batch counted (padding too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lume.config import MAX_SEED, check_settings, setting
from lume.errors import LumeError
from lume.inference.batching import IGNORE
from lume.stages.unlearning.methods.base import Method, register
from lume.training.scope import decoder_layers

TOKEN_SETS = ("all", "answer")


@dataclass
class RMUSettings:
    layer: int = setting(7, "The decoder layer whose activations are steered (counted from 0; the model's "
                            "count is checked when it loads)", at_least=0)
    steering_coefficient: float = setting(6.5, "c, the steering vector's norm", at_least=0)
    alpha: float = setting(1200.0, "Retain weight", at_least=0)
    seed: int = setting(0, "Seed of the random steering vector", at_least=0, at_most=MAX_SEED)
    tokens: str = setting("all", "all (every real token, pooled) or answer (answer tokens, per sequence)",
                          choices=TOKEN_SETS)
    adaptive_scale: float = setting(0.0, "0: the fixed coefficient c; above 0: per-task c_k from the activation "
                                         "norms", at_least=0)
    norms_from: str = setting("task", "adaptive: the norms of every forget example of the task over the token set "
                                      "(task), or of its first batch_size ones over every position of their padded "
                                      "batch (first-batch, Mr. Snuffleupagus's)", choices=("task", "first-batch"))

    def __post_init__(self):
        check_settings(self)


def mlp_prefix(layer_name: str, layer: torch.nn.Module) -> str:
    """The parameter-name prefix of a decoder layer's MLP block."""
    for child_name, _ in layer.named_children():
        if any(key in child_name.lower() for key in ("mlp", "feed_forward", "ffn")):
            return f"{layer_name}.{child_name}."
    raise LumeError(f"rmu: decoder layer {layer_name} ({type(layer).__name__}) has no MLP block "
                    "(a child named mlp, feed_forward or ffn); RMU cannot apply to this model")


class _Reached(Exception):
    """Raised by the hook once layer ℓ has run: nothing above it is needed."""


def layer_output(model, batch: dict, layer: int) -> torch.Tensor:
    """The output of decoder layer `layer` on the batch, as the layer returned it. The forward
    stops there (the layers above and the output layer are never run), except under a
    distributed wrapper, whose bookkeeping needs the forward to return."""
    captured = []
    stop = not (torch.distributed.is_available() and torch.distributed.is_initialized())

    def keep(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        if stop:
            raise _Reached

    handle = decoder_layers(model)[layer][1].register_forward_hook(keep)
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    except _Reached:
        pass
    finally:
        handle.remove()
    return captured[0]


def token_set_mean(per_token: torch.Tensor, batch: dict, tokens: str) -> torch.Tensor:
    """A per-token value averaged over the token set `tokens`: every real token pooled over the
    batch ("all"), or each row's answer tokens, then over the rows ("answer")."""
    if tokens == "all":
        mask = batch["attention_mask"]
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    mask = batch["labels"] != IGNORE
    return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()


def masked_mse(values: torch.Tensor, target: torch.Tensor, batch: dict, tokens: str) -> torch.Tensor:
    """‖values − target‖² averaged over the hidden size, then over the token set `tokens`."""
    return token_set_mean((values.float() - target.float()).square().mean(-1), batch, tokens)


def task_of(example) -> str:
    return getattr(example.record, "task", "")


@register
class RMU(Method):
    name = "rmu"
    Settings = RMUSettings
    needs_reference_model = True
    leaves_weights_without_gradient = True  # nothing above layer ℓ (with LoRA: its adapters) is reached
    policy_batches = ()  # it reads hidden states at layer ℓ, not answer logits

    def check_model(self, model_config) -> None:
        count = model_config.num_hidden_layers
        if not 0 <= self.settings.layer < count:
            raise LumeError(f"rmu: layer {self.settings.layer} does not exist (the model has {count} layers)")

    def select_parameters(self, model) -> None:
        self.check_model(model.config)
        blocks = decoder_layers(model)[max(0, self.settings.layer - 2):self.settings.layer + 1]
        wanted = tuple(mlp_prefix(name, layer) for name, layer in blocks)
        for name, parameter in model.named_parameters():  # within what the training settings let train
            parameter.requires_grad_(parameter.requires_grad and name.startswith(wanted))

    def __init__(self, settings=None):
        super().__init__(settings)
        self.coefficients: dict[str, float] = {}  # adaptive: each task's c_k, and the epoch it was measured in
        self.measured_epoch = -1

    def prepare(self, context):
        self.check_model(context.model.config)  # with LoRA, select_parameters is not called
        hidden = context.model.config.hidden_size
        generator = torch.Generator().manual_seed(self.settings.seed)
        tasks = sorted({task_of(e) for e in context.forget_examples}) if self.settings.adaptive_scale else [""]
        directions = [torch.rand(hidden, generator=generator) for _ in tasks]
        context.precomputed["rmu_directions"] = {task: d / d.norm() for task, d in zip(tasks, directions)}
        context.precomputed["rmu_control"] = self.settings.steering_coefficient * context.precomputed[
            "rmu_directions"][tasks[0]]  # the fixed target c·u

    def controls(self, context, forget: dict) -> torch.Tensor:
        """Each forget row's target c·u (its task's, for adaptive RMU), shaped [rows, 1, hidden]."""
        directions = context.precomputed["rmu_directions"]
        if not self.settings.adaptive_scale:
            return context.precomputed["rmu_control"].view(1, 1, -1)
        epoch = context.step // context.steps_per_epoch
        if epoch != self.measured_epoch:
            self.coefficients = self.activation_norms(context)
            self.measured_epoch = epoch
        tasks = [task_of(context.forget_examples[i]) for i in forget["index"].tolist()]
        return torch.stack([self.coefficients[t] * directions[t] for t in tasks]).unsqueeze(1)

    @torch.no_grad()
    def activation_norms(self, context) -> dict[str, float]:
        """adaptive_scale · the mean activation norm at layer ℓ of each task's forget examples."""
        by_task: dict[str, list] = {}
        for example in context.forget_examples:
            by_task.setdefault(task_of(example), []).append(example)
        norms = {}
        first_batch = self.settings.norms_from == "first-batch"
        for task, examples in by_task.items():
            per_example = []
            for start in range(0, context.batch_size if first_batch else len(examples), context.batch_size):
                batch = context.collate(examples[start:start + context.batch_size])
                with context.autocast():
                    hidden = layer_output(context.model, batch, self.settings.layer)
                if first_batch:  # every position of the padded batch, padding included
                    mask = torch.ones_like(batch["attention_mask"])
                else:
                    mask = batch["attention_mask"] if self.settings.tokens == "all" else batch["labels"] != IGNORE
                lengths = mask.sum(-1).clamp(min=1)
                per_example.append((hidden.float().norm(dim=-1) * mask).sum(-1) / lengths)
            norms[task] = self.settings.adaptive_scale * torch.cat(per_example).mean().item()
        return norms

    def state_dict(self) -> dict:
        return {"coefficients": self.coefficients, "measured_epoch": self.measured_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.coefficients = state.get("coefficients", {})
        self.measured_epoch = state.get("measured_epoch", -1)

    def loss(self, context, forget, retain):
        layer = self.settings.layer
        forget_hidden = layer_output(context.model, forget, layer)
        control = self.controls(context, forget).to(forget_hidden.device)
        tokens = self.settings.tokens
        forget_term = masked_mse(forget_hidden, control.expand_as(forget_hidden), forget, tokens)
        with context.starting_model() as reference:
            retain_reference = layer_output(reference, retain, layer)
        retain_term = masked_mse(layer_output(context.model, retain, layer), retain_reference, retain, tokens)
        loss = forget_term + self.settings.alpha * retain_term
        return loss, {"forget_mse": forget_term.item(), "retain_mse": retain_term.item()}
