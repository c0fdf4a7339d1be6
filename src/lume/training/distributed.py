"""One run over several processes, through accelerate: set-up, sharded weights, saving.

accelerate decides how a run is spread (`accelerate launch --config_file
configs/accelerate/{ddp,fsdp,zero3}.yaml`, or `torchrun`); this module keeps lume's stages
honest under each: a run started on several processes is one run or stops, a frozen reference
model is sharded like the trained one, and the weights saved are the gathered full ones.
"""

from __future__ import annotations

import copy
import logging
import os

import torch

from lume.errors import LumeError
from lume.training.precision import choose
from lume.training.sampling import process_share

log = logging.getLogger(__name__)


def check_tracker(name: str) -> None:
    """An accelerate tracker name that this environment can log with; else one clear error."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers
    from accelerate.utils import LoggerType

    if name not in LOGGER_TYPE_TO_CLASS:
        raise LumeError(f"log_with {name!r}: not a tracker accelerate knows (choose from "
                        f"{', '.join(sorted(LOGGER_TYPE_TO_CLASS))}; a tracker of your own is registered with "
                        "accelerate.tracking.register_tracker_class, accelerate 1.15 or later)")
    if name in LoggerType.list() and LoggerType(name) not in get_available_trackers():
        raise LumeError(f"log_with {name!r}: its package is not installed here (pip install {name})")


def started_processes() -> int:
    """How many processes the launcher (torchrun, accelerate launch, mpirun) started."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def make_accelerator(mixed_precision: str, gradient_accumulation: int = 1, cpu: bool = False,
                     log_with: str | None = None, logs_dir=None, find_unused_parameters: bool = False):
    """accelerate's Accelerator; one process keeps one mixed-precision setting, said clearly if mixed.

    `mixed_precision` "auto" is resolved by the hardware (`lume.training.precision`); the choice
    and its reason are said in one line and kept as `accelerator.lume_precision` for the reports.

    Several processes on a machine without a GPU (`torchrun` over gloo) are a CPU run: unless
    told so, accelerate takes each process for a lone one, and they would train separate models.
    `log_with` names an accelerate tracker, writing under `logs_dir` (off by default).
    `find_unused_parameters`: DDP's, for losses that leave some trainable weights without a gradient.
    `gradient_accumulation`: micro-batches per optimiser step, all processes together; each
    process accumulates its equal share of them.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    share = process_share(gradient_accumulation, started_processes())  # refused before any work if uneven
    cpu = cpu or (not torch.cuda.is_available() and started_processes() > 1)
    if log_with:
        check_tracker(log_with)
    precision = choose(mixed_precision, cpu)
    try:
        accelerator = Accelerator(gradient_accumulation_steps=share, mixed_precision=precision.used,
                                  cpu=cpu, log_with=log_with, project_dir=str(logs_dir) if logs_dir else None,
                                  kwargs_handlers=[DistributedDataParallelKwargs(
                                      find_unused_parameters=find_unused_parameters)])
    except ValueError as error:
        if "already been initialized" not in str(error):
            raise
        raise LumeError("this process already trained with another mixed-precision or device setting; accelerate "
                        f"allows one per process (asked for mixed_precision={precision.used!r}, cpu={cpu})") from None
    if accelerator.num_processes != started_processes():
        raise LumeError(f"{started_processes()} processes were started but accelerate set up "
                        f"{accelerator.num_processes} ({accelerator.distributed_type.value}): each would train its "
                        "own copy; launch with `accelerate launch` or `torchrun` and no --device override")
    accelerator.lume_precision = precision
    log.info(precision.line())
    return accelerator


def distribution(accelerator) -> dict:
    """How the run was spread and in what precision, for its report: process count, accelerate's
    distributed type, and the mixed precision used with what was asked and why."""
    return {"num_processes": accelerator.num_processes, "distributed_type": accelerator.distributed_type.value,
            "micro_batches_per_process": accelerator.gradient_accumulation_steps,
            "precision": accelerator.lume_precision.record()}


def shards_weights(accelerator) -> bool:
    """Each process holds a part of every weight (FSDP, DeepSpeed ZeRO-3), not a copy."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return accelerator.state.deepspeed_plugin.zero_stage == 3
    return False


def check_whole_weights(accelerator, needs: list[str]) -> None:
    """What needs whole weights in one process (LoRA's merge on save, keeping the best step's
    weights) is refused in one line on sharded weights."""
    if needs and shards_weights(accelerator):
        raise LumeError(f"{' and '.join(needs)} with sharded weights ({accelerator.distributed_type.value}) is not "
                        "supported: launch data-parallel (configs/accelerate/ddp.yaml), where each process holds "
                        "whole weights (a LoRA run fits one GPU per process)")


def reference_copy(model, accelerator):
    """A frozen copy of the starting model; under FSDP2 sharded like the trained one (a whole
    copy on each process would undo the sharding). DeepSpeed ZeRO-3 keeps a whole copy."""
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    if getattr(accelerator, "is_fsdp2", False):  # accelerate >= 1.6
        from accelerate.utils.fsdp_utils import fsdp2_prepare_model

        return fsdp2_prepare_model(accelerator, reference)
    return reference


def gathered_weights(accelerator, model) -> dict | None:
    """The full state dict on the main process (None elsewhere under FSDP); every process must call it.

    This is accelerate's documented path (`get_state_dict`), which gathers FSDP shards and
    DeepSpeed ZeRO-3 partitions; a plain `save_pretrained` would write one process's shards only.
    """
    return accelerator.get_state_dict(model)
