"""The parallel draw of ``benchmarks/parallel_draw.py`` (measured, not merged) equals fabook's brSF draw."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("numba")
SPEC = importlib.util.spec_from_file_location(
    "parallel_draw", Path(__file__).parents[1] / "benchmarks" / "parallel_draw.py"
)
draw = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(draw)


def _torch_adds_as_one_fma(high: float) -> bool:
    """Whether torch's ``add`` with ``alpha`` (fabook's levels) rounds once, as the kernel's FMA does."""
    k = np.arange(2**16, dtype=np.uint16).view(np.int16)
    step = high / 2**16
    offset = torch.tensor(step * (2**15 + 0.5))
    levels = torch.add(offset, torch.from_numpy(k).float(), alpha=step).numpy()  # as rules.uniform_levels
    fused = (k * np.float64(np.float32(step)) + np.float64(offset.item())).astype(np.float32)
    return np.array_equal(levels, fused)


@pytest.mark.parametrize("threads", [1, 3])
def test_kernel_draw_is_fabooks_bit_for_bit(threads):
    if not _torch_adds_as_one_fma(0.3):
        pytest.skip("torch's add does not round as one fused multiply-add on this CPU")
    n = 4 * 2 * draw.MIN_WORDS + 3  # two threads' worth of words and a last, partial word
    assert draw.matches_fabook(n, threads, 0.3)
