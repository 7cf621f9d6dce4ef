"""Every writer's temporary output is registered while it exists, so the SIGTERM/SIGINT handler can
remove it: files and whole folders (a DICOM series, a package being staged)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kitsrt.io import Geometry, Scan
from kitsrt.io import files
from kitsrt.io.files import is_temporary, remove_temporary_files, temporary_name


def test_a_registered_temporary_folder_is_removed_with_its_contents(tmp_path):
    staging = temporary_name(tmp_path / "package")
    (staging / "sub").mkdir(parents=True)
    (staging / "sub" / "model.onnx").write_bytes(b"x")
    assert is_temporary(staging)
    assert remove_temporary_files() >= 1
    assert list(tmp_path.iterdir()) == []


def _renames_only_registered_temporaries(monkeypatch) -> list:
    seen, real_replace = [], os.replace

    def replace(src, dst):
        with files._lock:
            seen.append(src in files._live_temporaries)
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return seen


def test_dicom_series_writer_stages_under_a_registered_name(tmp_path, monkeypatch):
    pytest.importorskip("pydicom", reason="pydicom not installed (pip install -e '.[dicom]')")
    from kitsrt.io.dicom_series import write_ct_series

    scan = Scan.from_array(np.full((3, 8, 8), -1000, np.int16), Geometry((8, 8, 3), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0),
                                                                          (1, 0, 0, 0, 1, 0, 0, 0, 1)))
    seen = _renames_only_registered_temporaries(monkeypatch)
    folder = write_ct_series(scan, tmp_path / "series")
    assert seen == [True] and len(list(folder.iterdir())) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["series"]
