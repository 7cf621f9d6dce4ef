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


def _race(write, monkeypatch, module, name: str) -> list:
    """Run ``write(n)`` in two threads that both pass the "does the output exist?" check before either
    renames its finished temporary file into place (``module.name`` waits for the other thread)."""
    import threading

    barrier, real = threading.Barrier(2, timeout=10), getattr(module, name)

    def after_both_checked(*args, **kwargs):
        out = real(*args, **kwargs)
        barrier.wait()
        return out

    monkeypatch.setattr(module, name, after_both_checked)
    outcome = [None, None]

    def run(n):
        try:
            write(n)
            outcome[n] = "won"
        except Exception as exc:  # recorded, asserted by the caller
            outcome[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcome


def _one_winner(outcome) -> int:
    from kitsrt.errors import InputError

    assert sorted(map(str, outcome)).count("won") == 1, outcome
    loser = outcome[1 - outcome.index("won")]
    assert isinstance(loser, InputError) and "already exists; pass --overwrite" in str(loser)
    return outcome.index("won")


def test_two_label_map_writers_without_overwrite_cannot_both_win(tmp_path, monkeypatch):
    from kitsrt.io import read_label_map, scan as scan_module, write_label_map

    geometry = Geometry((6, 5, 4), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    maps = [np.full(geometry.array_shape, n + 1, np.uint8) for n in range(2)]
    path = tmp_path / "seg.nii.gz"
    outcome = _race(lambda n: write_label_map(maps[n], geometry, path), monkeypatch, scan_module,
                    "check_written_geometry")
    winner = _one_winner(outcome)
    np.testing.assert_array_equal(read_label_map(path).array, maps[winner])
    assert [p.name for p in tmp_path.iterdir()] == ["seg.nii.gz"]  # no temporary left behind


def test_two_text_writers_without_overwrite_cannot_both_win(tmp_path, monkeypatch):
    from pathlib import Path

    from kitsrt.io.files import write_text_atomic

    path = tmp_path / "report.json"
    outcome = _race(lambda n: write_text_atomic(f"writer {n}", path), monkeypatch, Path, "write_bytes")
    winner = _one_winner(outcome)
    assert path.read_text() == f"writer {winner}"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_without_hard_links_the_name_is_claimed_exclusively(tmp_path, monkeypatch):
    """Where the file system refuses hard links, an exclusive create takes the name: an existing
    output is still refused, a new one is written whole."""
    import errno

    from kitsrt.errors import InputError
    from kitsrt.io.files import write_text_atomic

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = write_text_atomic("first", tmp_path / "a.txt")
    with pytest.raises(InputError, match="already exists"):
        files.move_into_place(files.temporary_name(path), path, overwrite=False)
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
