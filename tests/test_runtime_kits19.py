"""The cascade on phantoms of real KiTS19 label maps (held out of the demo's training): exact
output geometry, VOIs that contain the reference kidneys and tumors, identical repeated runs.
benchmarks/demo_accuracy.py checks the same on all 30 cases."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import kits19_label, needs_kits19
from kitsrt.io import read_label_map
from kitsrt.phantom import synthesize_ct
from kitsrt.runtime.restore import crop_grid
from kitsrt.runtime.segmenter import Segmenter


@pytest.fixture(scope="module")
def segmenter():
    with Segmenter.load(threads=2) as loaded:
        yield loaded


@needs_kits19
@pytest.mark.parametrize("case", ["case_00021", "case_00142"])
def test_cascade_on_a_real_geometry(segmenter, case):
    labels = read_label_map(kits19_label(case))
    ct = synthesize_ct(labels, seed=int(case.split("_")[1]))
    result = segmenter.segment(ct)
    assert result.geometry == labels.geometry  # size, spacing, origin, direction: exactly
    inside = np.zeros(labels.array.shape, bool)
    for box in result.vois:
        slices, _ = crop_grid(labels.geometry, box)
        inside[slices] = True
    reference = labels.array > 0
    assert (inside & reference).sum() >= 0.999 * reference.sum()
    np.testing.assert_array_equal(segmenter.segment(ct).labels, result.labels)


@needs_kits19
def test_four_threads_at_once_give_identical_maps(segmenter):
    from concurrent.futures import ThreadPoolExecutor

    labels = read_label_map(kits19_label("case_00021"))
    ct = synthesize_ct(labels, seed=21)
    expected = segmenter.segment(ct).labels
    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(lambda _: segmenter.segment(ct).labels, range(4)):
            np.testing.assert_array_equal(got, expected)
