"""Package security (files confined, hashes required, ranges as pydantic constraints), outputs that
never touch inputs, temporary files removed on SIGTERM/SIGINT, and discovery that skips kitsrt's
own outputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kitsrt.cli import app
from kitsrt.errors import InputError, ModelPackageError
from kitsrt.io import Geometry, Scan, write_image, write_label_map
from kitsrt.io.outputs import check_outputs_apart
from kitsrt.runtime.batch import list_scans
from kitsrt.runtime.package import demo_package_path, load_package
from kitsrt.runtime.pipeline import parse_pipeline

REPO = Path(__file__).resolve().parents[1]
GRID = Geometry((12, 10, 8), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def _package(tmp_path, edit=None) -> Path:
    package = tmp_path / "pkg"
    shutil.copytree(demo_package_path(), package)
    if edit is not None:
        data = json.loads((package / "pipeline.json").read_text())
        edit(data, package)
        (package / "pipeline.json").write_text(json.dumps(data))
    return package


# --- model packages -------------------------------------------------------------------------

def _outside(data, package):
    shutil.copy(package / "fine.onnx", package.parent / "fine.onnx")
    shutil.copy(package / "fine.json", package.parent / "fine.json")
    data["fine"]["model"] = "../fine.onnx"


def _absolute(data, package):
    data["fine"]["model"] = str((package / "fine.onnx").resolve())


def _symlink(data, package):
    shutil.copy(package / "fine.onnx", package.parent / "elsewhere.onnx")
    (package / "link.onnx").symlink_to(package.parent / "elsewhere.onnx")
    shutil.copy(package / "fine.json", package / "link.json")
    data["fine"]["model"] = "link.onnx"


@pytest.mark.parametrize("edit", [_outside, _absolute, _symlink], ids=["dotdot", "absolute", "symlink"])
def test_model_outside_the_package_is_refused(tmp_path, edit):
    with pytest.raises(ModelPackageError, match="outside the package folder"):
        load_package(_package(tmp_path, edit))


def test_empty_hash_is_refused(tmp_path):
    package = _package(tmp_path, lambda data, _: data["coarse"].update(sha256=""))
    with pytest.raises(ModelPackageError, match=r"coarse\.sha256 is empty"):
        load_package(package)


def test_model_that_is_a_fifo_is_refused(tmp_path):
    package = _package(tmp_path)
    (package / "fine.onnx").unlink()
    os.mkfifo(package / "fine.onnx")
    with pytest.raises(ModelPackageError, match="not a regular file"):
        load_package(package)


def _set(role, key, value):
    def edit(data):
        target = data[role] if role else data
        for part in key[:-1]:
            target = target[part]
        target[key[-1]] = value
    return edit


@pytest.mark.parametrize("edit, expected", [
    (_set("coarse", ["spacing_mm"], 0), "coarse.spacing_mm[0]"),
    (_set("coarse", ["spacing_mm"], -6.0), "coarse.spacing_mm[0]"),
    (_set("coarse", ["spacing_mm"], "6.0"), "coarse.spacing_mm"),
    (_set("fine", ["spacing_mm"], [1.0, 1.0, float("nan")]), "fine.spacing_mm[2]"),
    (_set("fine", ["spacing_mm"], [1e5, 1.0, 1.0]), "fine.spacing_mm[0]"),
    (_set("coarse", ["normalization", "hu_window"], [100.0, 100.0]), "coarse.normalization.hu_window"),
    (_set("coarse", ["normalization", "hu_window"], [100.0]), "coarse.normalization.hu_window[1]"),
    (_set("coarse", ["normalization", "hu_window"], ["-200", 500]), "coarse.normalization.hu_window[0]"),
    (_set("roi", ["components"], "2"), "roi.components"),
    (_set("roi", ["components"], 0), "roi.components"),
    (_set("coarse", ["divisibility"], 0), "coarse.divisibility"),
    (_set("fine", ["tiling", "overlap"], float("inf")), "fine.tiling.overlap"),
    (_set("fine", ["sha256"], "not-a-hash"), "fine.sha256"),
    (_set("roi", ["margin_mm"], -1.0), "roi.margin_mm"),
], ids=["zero-spacing", "negative-spacing", "string-spacing", "nan-spacing", "huge-spacing", "equal-window",
        "one-element-window", "string-window", "string-components", "zero-components", "zero-divisibility",
        "inf-overlap", "bad-hash", "negative-margin"])
def test_pipeline_ranges_are_one_line_errors_naming_the_key(edit, expected):
    data = json.loads((demo_package_path() / "pipeline.json").read_text())
    data.setdefault("roi", {})
    edit(data)
    with pytest.raises(ModelPackageError) as caught:
        parse_pipeline(data, "pkg/pipeline.json")
    assert str(caught.value).startswith(f"pkg/pipeline.json: {expected}") and "\n" not in str(caught.value)


def test_bad_package_through_the_cli_exits_4_without_output(tmp_path, small_case):
    package = _package(tmp_path, lambda data, _: data["coarse"].update(spacing_mm="6"))
    scan = write_image(small_case[1].image, tmp_path / "ct.nii.gz")
    result = CliRunner().invoke(app, ["infer", str(scan), "-o", str(tmp_path / "seg.nii.gz"), "--model", str(package)])
    assert result.exit_code == 4 and "coarse.spacing_mm" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "seg.nii.gz").exists()


# --- outputs never touch inputs --------------------------------------------------------------

def test_output_that_is_the_input_is_refused_and_the_input_kept(tmp_path, small_case):
    scan = write_image(small_case[1].image, tmp_path / "scan.nii.gz")
    before = scan.read_bytes()
    result = CliRunner().invoke(app, ["infer", str(scan), "-o", str(scan), "--overwrite"])
    assert result.exit_code == 2 and "is the input" in result.output
    assert scan.read_bytes() == before


def test_output_that_is_a_hard_link_to_the_input_is_refused(tmp_path):
    scan = write_label_map(np.zeros(GRID.array_shape, np.uint8), GRID, tmp_path / "scan.nii.gz")
    os.link(scan, tmp_path / "alias.nii.gz")
    with pytest.raises(InputError, match="is the input"):
        check_outputs_apart([tmp_path / "alias.nii.gz"], [scan])
    with pytest.raises(InputError, match="is the input"):
        check_outputs_apart([tmp_path / "other" / ".." / "scan.nii.gz"], [scan])


def test_output_that_is_the_data_file_of_a_metaimage_header_is_refused(tmp_path):
    import SimpleITK as sitk

    header = tmp_path / "scan.mhd"
    sitk.WriteImage(Scan.from_array(np.zeros(GRID.array_shape, np.int16), GRID).image, str(header))
    with pytest.raises(InputError, match="is the input"):
        check_outputs_apart([tmp_path / "scan.raw"], [header])


def test_report_over_a_package_file_is_refused(tmp_path, small_case):
    package = _package(tmp_path)
    scan = write_image(small_case[1].image, tmp_path / "ct.nii.gz")
    before = (package / "pipeline.json").read_bytes()
    result = CliRunner().invoke(app, ["infer", str(scan), "-o", str(tmp_path / "seg.nii.gz"), "--model", str(package),
                                      "--report", str(package / "pipeline.json"), "--overwrite"])
    assert result.exit_code == 2 and "is the input" in result.output
    assert (package / "pipeline.json").read_bytes() == before and not (tmp_path / "seg.nii.gz").exists()


def test_output_folder_or_file_parent_is_a_one_line_error(tmp_path):
    (tmp_path / "folder.nii.gz").mkdir()
    (tmp_path / "file").write_text("x")
    labels = np.zeros(GRID.array_shape, np.uint8)
    with pytest.raises(InputError, match="is a folder"):
        write_label_map(labels, GRID, tmp_path / "folder.nii.gz", overwrite=True)
    with pytest.raises(InputError, match="not a folder"):
        write_label_map(labels, GRID, tmp_path / "file" / "seg.nii.gz")


def test_unwritable_report_is_a_one_line_error(tmp_path, monkeypatch):
    from kitsrt.io import write_text_atomic

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", refuse)  # the rename over an output (--overwrite) ...
    monkeypatch.setattr(os, "link", refuse)  # ... and the no-clobber link that takes a new name
    for overwrite in (False, True):
        with pytest.raises(InputError, match="could not write it: Permission denied"):
            write_text_atomic("{}", tmp_path / "report.json", overwrite=overwrite)
        assert list(tmp_path.iterdir()) == []


# --- discovery ---------------------------------------------------------------------------------

def test_discovery_skips_own_outputs_and_temporary_files(tmp_path):
    for name in ("case_a.nii.gz", "case_a_seg.nii.gz", "case_b_seg.nrrd", ".case_c.nii.gz.partial-1a2b3c4d.nii.gz",
                 "case_a_report.json", "case_a.png"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_scans([tmp_path])] == ["case_a.nii.gz"]


# --- signals -------------------------------------------------------------------------------------

CHILD = """
import sys, time
from pathlib import Path
from kitsrt.io.files import install_signal_cleanup, temporary_sibling
install_signal_cleanup()
with temporary_sibling(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"half a label map")
    print("writing", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_write_removes_the_temporary_file(tmp_path, number):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "seg.nii.gz")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, encoding="utf-8", errors="replace",
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout.readline().strip() == "writing"
    assert any(tmp_path.iterdir())
    child.send_signal(number)
    assert child.wait(timeout=30) == 128 + number
    assert list(tmp_path.iterdir()) == [] and "Traceback" not in child.stderr.read()


WRITER = """
import sys, numpy as np
from kitsrt.io import Geometry, write_label_map
from kitsrt.io.files import install_signal_cleanup
install_signal_cleanup()
grid = Geometry((256, 256, 200), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
labels = np.random.default_rng(0).integers(0, 3, grid.array_shape).astype(np.uint8)
print("ready", flush=True)
for n in range(1000):
    write_label_map(labels, grid, sys.argv[1], overwrite=True)
"""


def test_sigterm_during_real_writes_leaves_no_temporary_and_no_partial_output(tmp_path):
    from kitsrt.io import read_label_map

    target = tmp_path / "seg.nii.gz"
    for delay in (0.3, 0.9, 1.7):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, encoding="utf-8", errors="replace",
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 128 + signal.SIGTERM
        assert [p.name for p in tmp_path.iterdir() if p.name != target.name] == []
        if target.exists():
            assert read_label_map(target).geometry.size == (256, 256, 200)


RACER = """
import sys, numpy as np
from kitsrt.io import Geometry, write_label_map
grid = Geometry((96, 96, 48), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
labels = np.full(grid.array_shape, int(sys.argv[2]), np.uint8)
for _ in range(15):
    write_label_map(labels, grid, sys.argv[1], overwrite=True)
"""


def test_two_processes_racing_for_one_output_leave_one_whole_file(tmp_path):
    from kitsrt.io import read_label_map

    target = tmp_path / "seg.nii.gz"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(target), str(value)],
                               env={**os.environ, "PYTHONPATH": str(REPO)}) for value in (1, 2)]
    assert [racer.wait(timeout=120) for racer in racers] == [0, 0]
    values = np.unique(read_label_map(target).array)
    assert len(values) == 1 and values[0] in (1, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["seg.nii.gz"]


@pytest.mark.parametrize("card_text", ["{", "[]"], ids=["not JSON", "not an object"])
@pytest.mark.parametrize("card_name", ["coarse.json", "fine.bf16.json"])
def test_a_corrupt_model_card_is_a_package_error(tmp_path, card_name, card_text):
    from kitsrt.runtime.segmenter import Segmenter

    package = _package(tmp_path)
    (package / card_name).write_text(card_text)
    precision = "bf16" if "bf16" in card_name else "fp32"
    backend = "openvino" if precision == "bf16" else "onnxruntime"
    if backend == "openvino":
        pytest.importorskip("openvino", reason="openvino not installed (pip install -e '.[openvino]')")
    with pytest.raises(ModelPackageError, match=card_name):
        Segmenter.load(package, backend=backend, precision=precision)
