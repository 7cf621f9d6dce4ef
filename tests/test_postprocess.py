"""drop-unless-touching keeps exactly the lesions that touch kidney in 26-connectivity, in one pass."""

from __future__ import annotations

import numpy as np

from kitsrt.runtime.pipeline import DropUnlessTouching
from kitsrt.runtime.postprocess import apply_rules


def test_keeps_touching_lesions_and_drops_the_others():
    labels = np.zeros((24, 24, 24), np.uint8)
    labels[4:12, 4:12, 4:12] = 1  # kidney
    labels[12:14, 12:14, 12:14] = 2  # touches the kidney's corner only diagonally: kept
    labels[6:8, 6:8, 12:15] = 2  # shares a face: kept
    labels[4:6, 14:16, 4:6] = 2  # two voxels away (one background voxel between): dropped
    labels[20:23, 20:23, 20:23] = 2  # far away: dropped
    out = apply_rules(labels, (DropUnlessTouching(label=2, touching=1),), 0.001)
    assert (out[12:14, 12:14, 12:14] == 2).all() and (out[6:8, 6:8, 12:15] == 2).all()
    assert not out[4:6, 14:16, 4:6].any() and not out[20:23, 20:23, 20:23].any()
    assert ((out == 1) == (labels == 1)).all()
