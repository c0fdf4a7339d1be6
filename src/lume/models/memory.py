"""Will the model fit? An estimate from the checkpoint's headers, before anything is loaded."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from lume.errors import LumeError
from lume.files import utf8_path


def parameter_count(folder: Path) -> int | None:
    """Parameters in the folder's safetensors files, read from their headers (no weights loaded)."""
    from safetensors import SafetensorError, safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    with utf8_path(folder) as readable:
        for file in files:
            try:
                with safe_open(str(readable / file.name), "pt") as handle:
                    total += sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())
            except (SafetensorError, OSError) as error:
                raise LumeError(f"cannot load model from {folder}: {file.name} is damaged or truncated "
                                f"({str(error).splitlines()[0]})") from None
    return total


def available_memory(device: str) -> int | None:
    """Free bytes on the device: the GPU's free memory, or the machine's available memory."""
    if device.startswith("cuda"):
        return torch.cuda.mem_get_info(torch.device(device))[0]
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
    return int(fields["MemAvailable"].split()[0]) * 1024 if "MemAvailable" in fields else None


def check_memory(name: str, folder: Path, dtype, device: str) -> None:
    """Refuse, before loading, a model whose weights in `dtype` exceed the device's free memory."""
    parameters, free = parameter_count(folder), available_memory(device)
    if parameters is None or free is None:
        return
    if isinstance(dtype, torch.dtype):
        needed = parameters * dtype.itemsize
    else:  # "auto": as stored
        needed = sum(file.stat().st_size for file in folder.glob("*.safetensors"))
    if needed > free:
        raise LumeError(f"{name}: {parameters / 1e9:.2f}B parameters in {str(dtype).removeprefix('torch.')} need "
                        f"about {needed / 1e9:.1f} GB on {device}, and {free / 1e9:.1f} GB are free; choose a "
                        "smaller --dtype (bfloat16) or another device")
