"""A bad export config is a one-line ModelPackageError (exit 4), never a traceback."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch", reason="export needs torch (export extra)")

from kitsrt.errors import ModelPackageError  # noqa: E402
from kitsrt.export.onnx_export import load_checkpoint  # noqa: E402


@pytest.mark.parametrize("config", [
    [1, 2, 3], {"model": "vbnet"}, {"base_channels": "8"}, {"base_channels": 0}, {"num_classes": -3},
    {"down_blocks": "abc"}, {"down_blocks": [1, "x"]}, {"down_blocks": []}, {"bottleneck_ratio": True},
    {"colour": "blue"},
], ids=["list", "model-string", "string-channels", "zero-channels", "negative-classes", "string-blocks",
        "string-in-blocks", "no-blocks", "bool-ratio", "unknown-key"])
def test_bad_export_config_is_one_line(tmp_path, config):
    (tmp_path / "checkpoint.pt").write_bytes(b"not read: the config is refused first")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelPackageError) as caught:
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert str(caught.value).startswith(str(tmp_path / "config.json")) and "\n" not in str(caught.value)
