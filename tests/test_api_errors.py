"""The public API lets only KitsrtError subclasses escape, each naming what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from kitsrt.errors import InputError
from kitsrt.eval.evaluate import evaluate_pairs
from kitsrt.io import Geometry, Scan
from kitsrt.eval.metrics import score_case
from kitsrt.runtime.segmenter import Segmenter

GRID = Geometry((40, 40, 20), (2.0, 2.0, 4.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


@pytest.fixture(scope="module")
def segmenter():
    with Segmenter.load(threads=1) as loaded:
        yield loaded


def _ct_array():
    return np.random.default_rng(1).normal(0, 30, GRID.array_shape).astype(np.float32) - 500


@pytest.mark.parametrize("given", [np.zeros((20, 40, 40), np.int16), [1, 2, 3], None, 3.5])
def test_segment_refuses_things_that_are_not_scans(segmenter, given):
    with pytest.raises(InputError, match="takes a kitsrt.io.Scan or a path"):
        segmenter.segment(given)


def test_segment_refuses_a_2d_scan(segmenter):
    with pytest.raises(InputError, match="2-D"):
        segmenter.segment(Scan(sitk.Image(32, 32, sitk.sitkInt16), source="slice"))


def test_segment_refuses_a_scan_holding_no_image(segmenter):
    with pytest.raises(InputError, match="SimpleITK image"):
        segmenter.segment(Scan(np.zeros((4, 4, 4)), source="array"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_scan_is_bad_input_not_no_kidney(segmenter, bad):
    array = _ct_array()
    array[5:7] = bad
    with pytest.raises(InputError, match="NaN or infinite") as caught:
        segmenter.segment(Scan.from_array(array, GRID, source="nan-scan"))
    assert caught.value.exit_code == 2


def test_all_nan_scan_is_bad_input(segmenter):
    with pytest.raises(InputError, match="NaN or infinite"):
        segmenter.segment(Scan.from_array(np.full(GRID.array_shape, np.nan, np.float32), GRID))


@pytest.mark.parametrize("spacing", [(1e-4, 2.0, 4.0), (2.0, 1e5, 4.0), (2.0, 2.0, float("nan"))])
def test_segment_refuses_insane_spacing_given_through_the_api(segmenter, spacing):
    image = sitk.GetImageFromArray(_ct_array())
    image.SetSpacing(spacing)
    with pytest.raises(InputError, match="spacing|field of view"):
        segmenter.segment(Scan(image, source="api-scan"))


def test_array_of_the_wrong_shape_is_an_input_error():
    with pytest.raises(InputError, match="array shape"):
        Scan.from_array(np.zeros((3, 3, 3), np.int16), GRID)


@pytest.mark.parametrize("tolerance", [float("nan"), -1.0, 0.0, float("inf")])
def test_bad_surface_dice_tolerance_refused(tolerance, tmp_path):
    labels = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(InputError, match="tolerance"):
        score_case(labels, labels, (1.0, 1.0, 1.0), tolerance)
    with pytest.raises(InputError, match="tolerance"):
        evaluate_pairs([("case", tmp_path / "missing.nii.gz", tmp_path / "missing.nii.gz")], tolerance)
