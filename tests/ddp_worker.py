"""Run under `torchrun --nproc_per_node 2`: unlearn (or memorize) into OUT, recording per process.

Arguments: MODEL FORGET RETAIN OUT OPTIONS, OPTIONS a JSON object: `stage` ("unlearn" or
"memorize"), `method`, `device` (None: the default), `lora_rank`, `fsdp` (FSDP2 through
accelerate), `method_settings`, `steps`, `schedule` (ScheduleSettings fields), `accumulation`
(micro-batches per step, default 2), `mixed_precision`, `save_every`, `crash_after` (a checkpoint's
step: exit there, as a kill would), `data_dir` (memorize); under torchrun with one process too.
Each process writes OUT/../rank-N.json: the digest of its full
trained weights, the example indices it drew, and its logits on fixed token ids.
"""

import hashlib
import json
import os
import sys

import torch

import lume.stages.target as target_module
import lume.training.distributed as distributed_module
import lume.training.loop as loop_module
import lume.training.stage as stage_module
from lume.stages.unlearning.schedule import Plan

PROBE_IDS = [[5, 17, 42, 8, 99, 3, 250, 7]]


def digest(state: dict) -> str:
    sha = hashlib.sha256()
    for name in sorted(state):
        sha.update(name.encode() + state[name].detach().float().contiguous().numpy().tobytes())
    return sha.hexdigest()


def full_weights(model) -> dict:
    """Every process's full copy of the weights (gathered from the shards under FSDP)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def shipped_fsdp_plugin():
    """The FSDP plugin `accelerate launch --config_file configs/accelerate/fsdp.yaml` sets up."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    arguments = launch_command_parser().parse_args(["--config_file", "configs/accelerate/fsdp.yaml", "-m", "lume"])
    environment = prepare_multi_gpu_env(_validate_launch_command(arguments)[0])
    os.environ.update({name: value for name, value in environment.items() if name.startswith("FSDP_")})
    return FullyShardedDataParallelPlugin()


def as_fsdp_run():
    """accelerate turns FSDP on for accelerator devices only; these CPU processes are told they
    are the FSDP2 run that configs/accelerate/fsdp.yaml makes of GPU processes."""
    from accelerate import PartialState
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    real = distributed_module.make_accelerator

    def make_fsdp_accelerator(*args, **kwargs):
        accelerator = real(*args, **kwargs)
        plugin = shipped_fsdp_plugin()
        if accelerator.mixed_precision != "no":  # as accelerate does: float32 needs no FSDP policy
            plugin.set_mixed_precision(accelerator.mixed_precision)
        PartialState().distributed_type = AcceleratorState().distributed_type = DistributedType.FSDP
        AcceleratorState().fsdp_plugin = plugin
        return accelerator

    for module in (loop_module, stage_module):
        module.make_accelerator = make_fsdp_accelerator


@torch.no_grad()
def probe_logits(trained, weights: dict, sharded: bool) -> torch.Tensor:
    """The trained model's logits in float32 (a sharded model computes in its FSDP policy's bf16,
    so an unsharded copy of its gathered weights stands in for it)."""
    if sharded:
        from transformers import AutoModelForCausalLM

        trained = AutoModelForCausalLM.from_config(trained.config)
        trained.load_state_dict(weights)
    return trained(input_ids=torch.tensor(PROBE_IDS)).logits


def record(out: str, options: dict, draws: list):
    """Wrap the stages' `train`: after it, write this process's digest, draws and probe logits."""
    real_train = stage_module.train

    def recording_train(trained, *args, **kwargs):
        result = real_train(trained, *args, **kwargs)
        rank = int(os.environ.get("RANK", "0"))
        weights = full_weights(trained) if torch.distributed.is_initialized() else trained.state_dict()
        with open(f"{out}/../rank-{rank}.json", "w") as handle:
            json.dump({"digest": digest(weights), "draws": draws,
                       "logits": probe_logits(trained, weights, options.get("fsdp")).tolist()}, handle)
        return result

    stage_module.train = recording_train


def record_draws(draws: list) -> None:
    real_draw, real_epoch = Plan.indices, target_module.epoch_batch

    def draw(self, *args, **kwargs):
        forget, retain = real_draw(self, *args, **kwargs)
        draws.append(forget)
        return forget, retain

    def epoch_batch(*args, **kwargs):
        chunk = real_epoch(*args, **kwargs)
        draws.append(chunk)
        return chunk

    Plan.indices, target_module.epoch_batch = draw, epoch_batch


def crash_after(step: int) -> None:
    """Exit every process once the checkpoint of `step` is written, as a kill would."""
    real_save = loop_module._Checkpoints.save

    def save(self, state):
        real_save(self, state)
        if state["step"] == step:
            self.accelerator.wait_for_everyone()
            os._exit(3)

    loop_module._Checkpoints.save = save


def run_stage(model: str, forget: str, retain: str, out: str, options: dict) -> None:
    from lume.stages.target import MemorizeConfig, memorize
    from lume.stages.unlearning import ScheduleSettings, UnlearnConfig, read_split, unlearn
    from lume.training import TrainingSettings

    training = TrainingSettings(batch_size=2, gradient_accumulation=options.get("accumulation", 2), learning_rate=1e-3,
                                lora_rank=options.get("lora_rank", 0), save_every=options.get("save_every"),
                                scheduler="constant", mixed_precision=options.get("mixed_precision", "auto"))
    if options["stage"] == "memorize":
        config = MemorizeConfig(base=model, data_dir=options["data_dir"], docs_per_task=1, held_out_per_task=1,
                                max_epochs=1, min_epochs=1, training=training, device=options.get("device"),
                                progress=False)
        memorize(out, config)
        return
    schedule = options.get("schedule", {})
    config = UnlearnConfig(method=options["method"], method_settings=options.get("method_settings", {}),
                           steps=None if schedule.get("kind") == "chunks" else options.get("steps", 3),
                           device=options.get("device"), progress=False, training=training,
                           schedule=ScheduleSettings(**schedule))
    unlearn(model, out, config, forget=read_split(forget, "forget"), retain=read_split(retain, "retain"))


def main(model: str, forget: str, retain: str, out: str, options_json: str) -> None:
    from lume.cli import set_up_logging

    set_up_logging()  # as the CLI does: the main process says what it does (resuming ...)
    options, draws = json.loads(options_json), []
    if options.get("fsdp"):
        as_fsdp_run()
    if options.get("crash_after"):
        crash_after(options["crash_after"])
    record_draws(draws)
    record(out, options, draws)
    run_stage(model, forget, retain, out, options)
    if torch.distributed.is_initialized():  # as the CLI does: a group left to the exit can abort it
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
    # Everything is written. Two FSDP2 processes over gloo on a CPU sometimes abort in the
    # interpreter's own teardown ("terminate called without an active exception", no Python
    # frame left), a configuration accelerate builds for GPUs only: end without that teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
