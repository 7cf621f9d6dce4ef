"""Orientation equivariance: the same physical scan stored with its index axes permuted or flipped
gives the same labels, voxel for voxel, once mapped back (odd sizes on purpose: a block-average
shrink that drops leftover voxels at one end used to break this)."""

from __future__ import annotations

import numpy as np
import pytest

from kitsrt.io import Geometry, Scan
from kitsrt.phantom import procedural_label_map, synthesize_ct
from kitsrt.runtime.preprocess import symmetric_blocks
from kitsrt.runtime.segmenter import Segmenter


def reoriented(scan: Scan, perm: tuple[int, int, int], flips: tuple[int, int, int]) -> Scan:
    """The same voxels at the same physical places, new index axis a = old axis perm[a], reversed
    where flips[a]."""
    g = scan.geometry
    ijk = np.flip(scan.array.transpose(2, 1, 0).transpose(perm), [a for a in range(3) if flips[a]])
    columns = np.stack([g.direction_matrix[:, perm[a]] * (-1 if flips[a] else 1) for a in range(3)], axis=1)
    first = [0, 0, 0]
    for a in range(3):
        if flips[a]:
            first[perm[a]] = g.size[perm[a]] - 1
    geometry = Geometry(tuple(g.size[p] for p in perm), tuple(g.spacing_mm[p] for p in perm),
                        tuple(float(o) for o in g.index_to_physical([first])[0]), tuple(columns.ravel()))
    return Scan.from_array(np.ascontiguousarray(ijk.transpose(2, 1, 0)), geometry)


def mapped_back(labels: np.ndarray, perm, flips) -> np.ndarray:
    ijk = np.flip(labels.transpose(2, 1, 0), [a for a in range(3) if flips[a]])
    return ijk.transpose(np.argsort(perm)).transpose(2, 1, 0)


@pytest.fixture(scope="module")
def odd_case():
    """Odd sizes on every axis; 2.3 mm and 3.7 mm give shrink factors 2 and 1 towards 6 mm."""
    labels = procedural_label_map((131, 119, 45), (2.3, 2.3, 3.7), seed=3)
    return synthesize_ct(labels, seed=3)


@pytest.fixture(scope="module")
def reference(odd_case):
    with Segmenter.load(threads=2) as segmenter:
        yield segmenter, segmenter.segment(odd_case).labels


ORIENTATIONS = [
    ((0, 1, 2), (1, 0, 0)),  # one flip, even shrink factor on an odd axis
    ((0, 1, 2), (0, 0, 1)),  # one flip, slice axis
    ((0, 1, 2), (1, 1, 0)),  # two flips
    ((2, 1, 0), (0, 0, 0)),  # slices first, like KiTS19 files
    ((1, 2, 0), (0, 1, 1)),  # permutation and two flips
    ((2, 0, 1), (1, 1, 1)),  # permutation and three flips
]


@pytest.mark.parametrize("perm,flips", ORIENTATIONS)
def test_reoriented_scan_gives_identical_labels(odd_case, reference, perm, flips):
    segmenter, expected = reference
    assert expected.any()
    scan = reoriented(odd_case, perm, flips)
    np.testing.assert_array_equal(mapped_back(scan.array, perm, flips), odd_case.array)  # the helper itself
    result = segmenter.segment(scan)
    assert result.geometry == scan.geometry
    got = mapped_back(result.labels, perm, flips)
    assert int((got != expected).sum()) == 0


def test_symmetric_blocks_tile_the_axis_evenly():
    for size in range(2, 60):
        for factor in range(1, 13):
            block, dropped = symmetric_blocks(size, factor)
            assert (size - 2 * dropped) % block == 0 and size - 2 * dropped >= block, (size, factor)
            assert block == factor or (block % 2 == 1 and abs(block - factor) == 1) or block == 1, (size, factor)
    assert symmetric_blocks(57, 4) == (3, 0) and symmetric_blocks(512, 7) == (7, 4)
