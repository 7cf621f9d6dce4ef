"""Smoke test of `kitsrt bench`: one tiny case, one run. No timing is asserted, only the shape of
what it reports."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kitsrt.cli import app

pytest.importorskip("monai", reason="kitsrt bench needs the bench extra (monai)")
pytest.importorskip("torch", reason="kitsrt bench needs the bench extra (torch)")


def test_bench_quick_writes_json_markdown_and_plot(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--quick", "--runs", "1", "--threads", "1", "--throughput",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench.json").read_text())
    (case,) = report["cases"]
    for key in ("speedup_vs_sliding_window", "speedup_vs_torch_eager", "outside_networks_vs_decode",
                "peak_rss_bytes"):
        assert case[key] > 0
    stages = case["configs"]["onnxruntime/fp32"]["stages"]
    for stage in ("read", "coarse_preprocess", "coarse_net", "voi", "fine_preprocess", "fine_net",
                  "postprocess", "measure", "write", "end_to_end"):
        assert stages[stage]["median_s"] >= 0 and stages[stage]["p95_s"] >= stages[stage]["median_s"] - 1e-9
    assert "torch/fp32" in case["configs"]
    assert "AMD" in report["machine"] or "cores" in report["machine"]
    assert (tmp_path / "bench.md").read_text().startswith("Machine:")
    assert (tmp_path / "bench.png").stat().st_size > 1000
    throughput = report["throughput"]
    for mode in ("one-by-one", "overlapped"):
        best = throughput["best"][mode]
        assert best["scans"] == 2 and best["scans_per_hour"] > 0 and 0 < best["cpu_utilisation"] <= 1.01
    assert "scans/hour" in (tmp_path / "bench.md").read_text()


def test_an_unknown_case_is_a_one_line_error_before_any_work(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--cases", "small,medium", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--cases medium: no such case; choose from small, median, largest" in result.output
    assert not (tmp_path / "bench.json").exists()
