"""What this machine computes fast: detected from the CPU's flags, never assumed."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


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
