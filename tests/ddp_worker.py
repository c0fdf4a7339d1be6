"""Run under `torchrun --nproc_per_node 2`: unlearn MODEL (forget/retain JSONL files) into OUT
and write each process's digest of its trained weights to OUT/../rank-N.txt."""

import hashlib
import sys

import torch

import lume.stages.unlearning.unlearner as unlearn_module
from lume.stages.unlearning import UnlearnConfig, read_split, unlearn
from lume.training import TrainingSettings


def digest(state: dict) -> str:
    sha = hashlib.sha256()
    for name in sorted(state):
        sha.update(name.encode() + state[name].detach().float().contiguous().numpy().tobytes())
    return sha.hexdigest()


def main(model: str, forget: str, retain: str, out: str, method: str, device: str) -> None:
    real_train = unlearn_module.train

    def recording_train(trained, *args, **kwargs):
        result = real_train(trained, *args, **kwargs)
        rank = torch.distributed.get_rank()
        with open(f"{out}/../rank-{rank}.txt", "w") as handle:
            handle.write(digest(trained.state_dict()))
        return result

    unlearn_module.train = recording_train
    config = UnlearnConfig(method=method, steps=3, device=None if device == "default" else device, progress=False,
                           training=TrainingSettings(batch_size=2, learning_rate=1e-3))
    unlearn(model, out, config, forget=read_split(forget, "forget"), retain=read_split(retain, "retain"))


if __name__ == "__main__":
    main(*sys.argv[1:])
