"""Freed CPU memory is reused, not faulted in again: each case in a fresh process, whose malloc it sets."""

import json
import os
import subprocess
import sys

import pytest

# Allocates, touches and frees a 256 MiB block four times, then four more, through libc's own
# malloc (torch's 64-byte-aligned blocks can fragment glibc 2.36's heap for a few steps, which
# would make the count depend on where small allocations land); prints whether lume set malloc
# and the page faults of the last four. Without the setting each block faults in its 65,536
# pages anew.
REALLOCATE = """
import ctypes, ctypes.util, json, resource
from lume.models.heap import keep_freed_memory
{setup}
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
SIZE = 256 * 2 ** 20
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def allocate(times):
    for _ in range(times):
        block = libc.malloc(SIZE)
        ctypes.memset(block, 1, SIZE)
        libc.free(block)
allocate(4)
before = faults()
allocate(4)
print(json.dumps({{"kept": {kept}, "faults": faults() - before}}))
"""
PAGES = 256 * 2 ** 20 // os.sysconf("SC_PAGE_SIZE")


def reallocated(setup: str, kept: str, **environment) -> dict:
    code = REALLOCATE.format(setup=setup, kept=kept)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, **environment})
    return json.loads(done.stdout.splitlines()[-1])


def test_kept_memory_faults_its_pages_in_once_not_at_every_allocation():
    glibc = reallocated("", "None")
    kept = reallocated("kept = keep_freed_memory()", "kept")
    assert glibc["faults"] >= 4 * PAGES  # the default: every allocation faults its pages anew
    assert kept["kept"] is True
    assert kept["faults"] < PAGES / 2  # none of them


@pytest.mark.parametrize("value", ["0", "false", "off", "No"])
def test_the_opt_out_leaves_malloc_as_it_is(value):
    result = reallocated("kept = keep_freed_memory()", "kept", LUME_KEEP_FREED_MEMORY=value)
    assert result["kept"] is False
    assert result["faults"] >= 4 * PAGES


def test_an_opt_out_that_is_no_switch_is_refused(monkeypatch):
    from lume.errors import LumeError
    from lume.models import heap

    monkeypatch.setenv("LUME_KEEP_FREED_MEMORY", "maybe")
    monkeypatch.setattr(heap, "_kept", False)
    with pytest.raises(LumeError, match="LUME_KEEP_FREED_MEMORY='maybe': expected 0 or 1"):
        heap.keep_freed_memory()


def test_loading_a_model_onto_the_cpu_keeps_freed_memory(tiny_model_dir):
    setup = f"from lume.models import load_model\nload_model({str(tiny_model_dir)!r}, dtype='float32', device='cpu')"
    assert reallocated(setup, "None")["faults"] < PAGES / 2
