"""The training cache (``kitsrt train --cache``) refuses phantoms drawn by another phantom version."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from kitsrt.errors import InputError
from kitsrt.phantom import random_style
from kitsrt.training import data
from kitsrt.training.data import StyledCase, Volume, _load_cached, _save_cached, phantom_stamp


def _volumes():
    return {"coarse": [Volume(np.ones((2, 3, 4), np.float32), np.zeros((2, 3, 4), np.uint8), "c")]}


def test_a_cached_phantom_of_another_version_or_style_is_refused(tmp_path, monkeypatch):
    case = StyledCase("case_00007_style0", None, 12345)
    stamp = phantom_stamp(case)
    assert repr(random_style(case.seed)) in stamp
    path = tmp_path / "c.npz"
    _save_cached(path, _volumes(), stamp)
    assert _load_cached(path, "c", stamp=stamp)["coarse"][0].image.shape == (2, 3, 4)
    monkeypatch.setattr(data, "STYLE_VERSION", data.STYLE_VERSION + 1)
    with pytest.raises(InputError, match="another phantom version"):
        _load_cached(path, "c", stamp=phantom_stamp(case))
    monkeypatch.setattr(data, "random_style", lambda seed: replace(random_style(seed), horseshoe=True))
    assert phantom_stamp(case) != stamp


def test_an_unstamped_cache_is_read_as_before(tmp_path):
    path = tmp_path / "old.npz"
    _save_cached(path, _volumes())  # as older trees, which the demo build scripts fill caches with, wrote it
    loaded = _load_cached(path, "c", stamp=phantom_stamp(StyledCase("c", None, 1)))
    assert set(loaded) == {"coarse"} and loaded["coarse"][0].labels.dtype == np.uint8
