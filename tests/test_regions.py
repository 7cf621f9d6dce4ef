"""One entry point for network inputs (``stage_input``) and plans whose restore is the exact inverse."""

from __future__ import annotations

import numpy as np

from kitsrt.io import Geometry, Scan
from kitsrt.runtime.pipeline import WindowUnit, window_network
from kitsrt.runtime.preprocess import Box, scan_box
from kitsrt.runtime.regions import stage_input, stage_labels
from kitsrt.runtime.kinds import kind_of
from kitsrt.runtime.restore import labels_to_scan
from kitsrt.runtime.segmenter import Segmenter


class Recording:
    """A backend wrapper that keeps every input it was fed."""

    def __init__(self, backend):
        self.backend, self.fed = backend, []

    def infer(self, feed):
        self.fed.append(next(iter(feed.values()))[0, 0].copy())
        return self.backend.infer(feed)

    def __getattr__(self, name):  # everything else (close, release_memory, ...) from the real backend
        return getattr(self.backend, name)


def test_calibration_draws_exactly_what_the_runtime_feeds_the_networks(small_case):
    _, ct = small_case
    with Segmenter.load(threads=1) as segmenter:
        spec = segmenter.package.spec
        inputs = kind_of(spec).network_inputs(ct, spec, segmenter.backends)
        recorders = {role: Recording(b) for role, b in segmenter.backends.items()}
        segmenter.backends = recorders
        result = segmenter.segment(ct)
    assert len(inputs["fine"]) == len(result.vois) == 2
    np.testing.assert_array_equal(inputs["coarse"][0], recorders["coarse"].fed[0])
    fed = recorders["fine"].fed
    for volume in inputs["fine"]:  # each VOI's last (grown) input is the one calibrated on
        assert any(f.shape == volume.shape and np.array_equal(f, volume) for f in fed)


def test_plan_restores_labels_exactly():
    geometry = Geometry((50, 60, 40), (2.0, 2.0, 2.0), (-49.0, -59.0, -39.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    rng = np.random.default_rng(1)
    labels = Scan.from_array(rng.integers(0, 3, geometry.array_shape).astype(np.uint8), geometry)
    ct = Scan.from_array(np.full(geometry.array_shape, 40, np.int16), geometry)
    network = window_network("m.onnx", 2.0, (-200.0, 500.0), 8, (8, 8, 8), (96, 96, 96), symmetric=False)
    volume, plan = stage_input(ct, scan_box(geometry), network, crop_shape=(32, 48, 48))
    assert volume.shape == plan.input_shape == (32, 48, 48) and network.normalization == WindowUnit(hu_window=(-200, 500))
    on_input = stage_labels(labels, plan)
    back = labels_to_scan(on_input, plan)
    assert back.shape == geometry.array_shape
    kept = back > 0
    np.testing.assert_array_equal(back[kept], labels.array[kept])
    inside = labels_to_scan(np.ones(plan.input_shape, np.uint8), plan).astype(bool)
    np.testing.assert_array_equal(back[inside], labels.array[inside])  # exact wherever the crop reached
    assert not back[~inside].any() and inside.sum() < kept.size  # cropped away: background


def test_fine_region_plan_covers_the_box_on_the_original_grid(small_case):
    _, ct = small_case
    network = window_network("m.onnx", 1.0, (-200.0, 500.0), 8, (32, 32, 32), (256, 256, 256), anti_alias=False)
    box = Box((-80.0, 0.0, -30.0), (-20.0, 60.0, 40.0))
    volume, plan = stage_input(ct, box, network)
    assert volume.shape == plan.grid.array_shape and all(n % 8 == 0 for n in volume.shape)
    assert plan.target.spacing_mm == ct.geometry.spacing_mm
    assert plan.target.array_shape == tuple(s.stop - s.start for s in plan.slices)


def test_labels_of_is_argmax_with_ties_to_the_first_channel():
    from kitsrt.runtime.restore import labels_of

    scores = np.random.default_rng(0).integers(0, 3, (3, 6, 7, 8)).astype(np.float32)  # many ties
    np.testing.assert_array_equal(labels_of(scores), scores.argmax(axis=0).astype(np.uint8))
    assert labels_of(scores).dtype == np.uint8


def test_the_sliding_window_pads_with_the_one_air_value_of_regions(monkeypatch):
    """Padding a tiled input and padding a cropped region use one definition of normalised air
    (``regions.air_value``, imported by ``inference``), not two copies of the formula."""
    from kitsrt.runtime import inference, regions
    from kitsrt.runtime.package import load_package

    fine = load_package().spec.fine
    network = fine.model_copy(update={"tiling": fine.tiling.model_copy(update={"max_voxels": 64,
                                                                                "patch_size": (16, 16, 16)})})
    assert inference.air_value is regions.air_value
    monkeypatch.setattr(inference, "air_value", lambda spec: -7.5)
    tiles = []

    class Recorder:
        def infer(self, feed):
            (tile,) = feed.values()
            tiles.append(tile.copy())
            return {network.output_name: np.zeros((1, 3, *tile.shape[2:]), np.float32)}

    inference.infer_volume(np.zeros((8, 8, 8), np.float32), network, Recorder())
    assert tiles and float(tiles[0].min()) == -7.5  # the region beyond the 8^3 input is padding
