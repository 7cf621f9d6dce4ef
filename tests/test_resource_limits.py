"""Resource limits: a case past its time limit or over the memory budget stops cleanly with exit 8,
writes nothing, and a batch goes on with the next case."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from kitsrt.cli import app
from kitsrt.errors import ResourceLimitError
from kitsrt.io import Geometry, Scan, write_image
from kitsrt.runtime.batch import CASE_BASE_BYTES, CASE_BYTES_PER_VOXEL, check_memory_budget
from kitsrt.runtime.segmenter import Segmenter
from kitsrt.runtime.timing import Timings


def test_time_limit_stops_at_the_next_stage_boundary():
    timings = Timings(limit_s=0.0, where="scan.nii.gz")
    with pytest.raises(ResourceLimitError, match=r"scan\.nii\.gz: stopped at stage coarse_net") as caught:
        with timings.timer("coarse_net"):
            pass
    assert caught.value.exit_code == 8


def test_segment_past_its_time_limit_raises_exit_8(small_case):
    with Segmenter.load(threads=1) as segmenter, pytest.raises(ResourceLimitError, match="time limit"):
        segmenter.segment(small_case[1], time_limit_s=1e-6)


def test_memory_budget_is_checked_from_the_header(tmp_path, small_case):
    path = write_image(small_case[1].image, tmp_path / "ct.nii.gz")
    voxels = int(np.prod(small_case[1].geometry.size))
    needed = voxels * CASE_BYTES_PER_VOXEL + CASE_BASE_BYTES
    check_memory_budget(path, needed)                       # exactly enough
    with pytest.raises(ResourceLimitError, match="memory budget"):
        check_memory_budget(path, needed - 1)


def test_batch_skips_the_case_over_budget_and_runs_the_other(tmp_path, small_case):
    _, ct = small_case
    folder = tmp_path / "scans"
    folder.mkdir()
    write_image(ct.image, folder / "small.nii.gz")
    g = ct.geometry
    big = Geometry((g.size[0], g.size[1], g.size[2] * 3), g.spacing_mm, g.origin_mm, g.direction)
    write_image(Scan.from_array(np.concatenate([ct.array] * 3, axis=0), big).image, folder / "big.nii.gz")
    budget_gb = (int(np.prod(g.size)) * 2 * CASE_BYTES_PER_VOXEL + CASE_BASE_BYTES) / 2**30
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["infer", str(folder), "-o", str(out), "--memory-budget-gb", f"{budget_gb:.6f}",
                                      "--quiet"])
    assert result.exit_code == 8, result.output
    assert "big.nii.gz" in result.output and "memory budget" in result.output
    assert (out / "small_seg.nii.gz").exists() and not (out / "big_seg.nii.gz").exists()
