"""Float tolerances sized by the dtype: a few units in the last place, never less than one."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def ulps(dtype: npt.DTypeLike, count: float = 4) -> float:
    """`count` units in the last place of 1.0 in `dtype`: a relative tolerance.

    Two computations of the same value that round differently (a reciprocal then a
    product against one division, a fused op against its parts) differ by an ulp or
    two; a tolerance below one ulp passes or fails with the CPU it runs on.
    """
    assert count >= 1, "a tolerance below one ulp depends on the rounding of the CPU"
    return count * float(np.finfo(np.dtype(dtype)).eps)
