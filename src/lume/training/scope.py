"""Which weights a run trains: all of them (the default), those of chosen decoder layers and,
within them, of chosen modules (the layer-focused fine-tuning of several SemEval-2025 systems),
or LoRA adapters on the linear layers among those.

`layers` are decoder-layer indices, negative ones counting from the last (`[-8, ..., -1]` is the
last eight); `modules` are parts of parameter names (`mlp`, `self_attn`, `down_proj`,
`mlp.down_proj`), matched as whole dotted components. Outside the chosen layers nothing trains
(not the embeddings, the final norm or the output layer either) but the weights `also_train`
names the same way (`embed_tokens`, `lm_head`).
"""

from __future__ import annotations

import warnings

import torch

from lume.errors import LumeError


def decoder_layers(model) -> list[tuple[str, torch.nn.Module]]:
    """(name, module) of each decoder layer: the model's list with one block per hidden layer."""
    inner = model
    while not hasattr(inner, "config") and hasattr(inner, "module"):  # a DDP wrapper has no config
        inner = inner.module
    count = inner.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return [(f"{name}.{index}", layer) for index, layer in enumerate(module)]
    raise LumeError(f"cannot find the {count} decoder layers of {type(model).__name__}")


def layer_names(model, layers: list[int] | None) -> list[str] | None:
    """The module names of the chosen decoder layers (None: no restriction); an index the model
    does not have is refused, naming the model's layer count."""
    if layers is None:
        return None
    found = decoder_layers(model)
    check_layer_indices(layers, len(found))
    return sorted({found[index][0] for index in layers})


def check_layer_indices(layers: list[int] | None, count: int) -> None:
    """Refuse a chosen layer a model of COUNT decoder layers does not have (before any weight is loaded)."""
    for index in layers or ():
        if not -count <= index < count:
            raise LumeError(f"layer {index} does not exist: the model has {count} decoder layers "
                            f"(0 to {count - 1}, or -{count} to -1 from the last)")


def _contains(name: str, part: str) -> bool:
    return f".{part}." in f".{name}."


def in_scope(name: str, layers: list[str] | None, modules: list[str] | None) -> bool:
    """Whether the parameter or module `name` lies in the chosen layers and modules."""
    return (layers is None or any(name.startswith(layer + ".") for layer in layers)) and \
        (modules is None or any(_contains(name, module) for module in modules))


def freeze_outside(model, layers: list[int] | None, modules: list[str] | None, also: list[str] | None = None) -> None:
    """Full fine-tuning: every weight outside the chosen layers and modules stops training, but
    those named by a part in `also` (a tied weight by either of its names)."""
    if layers is None and modules is None:
        return
    chosen, also = layer_names(model, layers), also or []
    names = {id(parameter): [] for parameter in model.parameters()}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names[id(parameter)].append(name)
    for part in also:
        if not any(_contains(name, part) for found in names.values() for name in found):
            raise LumeError(f"also_train: no weight of {type(model).__name__} is named with {part!r}")
    kept = 0
    for parameter in model.parameters():
        wanted = any(in_scope(name, chosen, modules) or any(_contains(name, part) for part in also)
                     for name in names[id(parameter)])
        parameter.requires_grad_(parameter.requires_grad and wanted)
        kept += parameter.requires_grad
    if not kept:
        raise LumeError(f"no weight trains: no parameter of layers {layers} matches modules {modules}")


def lora_targets(model, layers: list[int] | None, modules: list[str] | None) -> str | list[str]:
    """The linear modules LoRA adapts: peft's "all-linear" (every linear layer but the output
    layer) without a restriction, else the full names of those in the chosen layers and modules."""
    if layers is None and modules is None:
        return "all-linear"
    chosen = layer_names(model, layers)
    names = [name for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and in_scope(name, chosen, modules)
             and not name.endswith("lm_head")]
    if not names:
        raise LumeError(f"LoRA has nothing to adapt: no linear layer of layers {layers} matches modules {modules}")
    return names


def with_lora(model, settings):
    """Wrap the model in LoRA adapters (`settings`: TrainingSettings) when `lora_rank` > 0, on
    the linear layers of the chosen layers and modules (every linear layer by default)."""
    if settings.lora_rank <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    if hidden is not None and settings.lora_rank > hidden:
        raise LumeError(f"lora_rank {settings.lora_rank} is above the model's hidden size {hidden}: no adapter of "
                        f"that rank is smaller than its layer; use a rank up to {hidden}, or 0 (full fine-tuning)")
    config = LoraConfig(r=settings.lora_rank, lora_alpha=settings.lora_alpha,
                        target_modules=lora_targets(model, settings.layers, settings.modules),
                        lora_dropout=settings.lora_dropout, task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft reads transformers' deprecated alias: not the user's concern
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        return get_peft_model(model, config)


def scoped(model, settings):
    """The model ready to train as `settings` says: LoRA adapters on the chosen linear layers,
    or (full fine-tuning) every weight outside the chosen layers and modules frozen."""
    if settings.lora_rank > 0:
        return with_lora(model, settings)
    freeze_outside(model, settings.layers, settings.modules, settings.also_train)
    return model
