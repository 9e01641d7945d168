"""What this machine computes fast: detected from the CPU's flags, never assumed."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

#: The precisions a recipe or an evaluation may ask for: auto (bf16 where the hardware has it), bf16, fp32.
PRECISIONS = ("auto", "bf16", "fp32")


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16): there, bf16 autocast trains
    faster than fp32 (`bench/train.py`) and bf16 matrix products sample faster (`bench/generate.py`)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
        return bool({"amx_bf16", "avx512_bf16"} & flags)
    except OSError:
        import torch

        return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


def bf16_on_cpu(device, precision: str = "auto") -> bool:
    """Whether work on ``device`` (a torch.device) runs in bf16 under ``precision``: asked for, or
    ``auto`` on a CPU with native bf16 (sampling and scoring; a GPU keeps its own dtype there)."""
    return precision == "bf16" or (precision == "auto" and device.type == "cpu" and cpu_has_bf16())
