"""The toolchain on every pipeline kind, by role: calibration sets drawn through the runtime's own
stage inputs, FP16 / INT8 variants behind the whole-package gate, TensorRT engine plans, and the
refusals for a set that belongs to another package. One contract, parametrised over the kinds, on
tiny packages (``tests/tiny_packages.py``) and small phantoms."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from kitsrt.calibration.dataset import Source, build_set, load_manifest, role_arrays
from kitsrt.calibration.precision import check_tensorrt_qdq
from kitsrt.cli import app
from kitsrt.errors import BackendUnavailable, ModelPackageError
from kitsrt.phantom import procedural_label_map, synthesize_ct
from kitsrt.runtime.kinds import kind_of, roles_of
from kitsrt.runtime.package import load_package
from kitsrt.runtime.segmenter import Segmenter
from kitsrt.runtime.timing import Timings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_packages import BUILDERS  # noqa: E402

pytest.importorskip("scipy", reason="the sliding-window kind resamples with scipy (the sliding-window extra)")

KINDS = list(BUILDERS)
ROLES = {"cascade": ["coarse", "fine"], "nested": ["kidney", "tumor"], "sliding-window": ["fold_0", "fold_1"]}
runner = CliRunner()


def small_phantom(seed: int) -> tuple:
    labels = procedural_label_map((96, 96, 40), (4.0, 4.0, 6.0), seed=seed)
    return labels, synthesize_ct(labels, seed=seed)


def sources(count: int = 3) -> list[Source]:
    out = []
    for n in range(count):
        labels, ct = small_phantom(11 + n)
        out.append(Source(f"tiny_{n}", ct, labels, f"procedural(seed={11 + n})", 11 + n))
    return out


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    return {kind: build(root / kind.replace("-", "_")) for kind, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def calibration_sets(packages, tmp_path_factory):
    """One calibration set per kind: 3 small phantoms, one held out."""
    root = tmp_path_factory.mktemp("sets")
    made = {}
    for kind, folder in packages.items():
        package = load_package(folder)
        with Segmenter.load(folder, threads=1) as segmenter:
            build_set(sources(), package, segmenter, root / kind, holdout_fraction=0.34, seed=1, tiles_per_case=4)
        made[kind] = root / kind
    return made


class Recorder:
    """Wraps a loaded backend and keeps a copy of every input it is fed (N, C, z, y, x)."""

    def __init__(self, backend, name: str):
        self.backend, self.fed = backend, []
        self.name = name

    def infer(self, feed):
        self.fed.append(np.array(feed[self.name]))
        return self.backend.infer(feed)


@pytest.mark.parametrize("kind", KINDS)
def test_calibration_inputs_are_what_the_runtime_feeds(kind, packages):
    """``network_inputs`` returns, per role, inputs the kind's ``run`` fed that network (the cascade:
    the last attempt of each VOI; the nested kind: both exactly; sliding window: some of its tiles)."""
    package = load_package(packages[kind])
    spec = package.spec
    _, ct = small_phantom(11)
    with Segmenter.load(packages[kind], threads=1) as segmenter:
        recorders = {role: Recorder(backend, spec.networks()[role].input_name)
                     for role, backend in segmenter.backends.items()}
        kind_of(spec).run(ct, spec, recorders, Timings())
        drawn = kind_of(spec).network_inputs(ct, spec, segmenter.backends, 4)
    assert list(drawn) == ROLES[kind]
    for role, arrays in drawn.items():
        fed = [batch[0, 0] for batch in recorders[role].fed]
        assert arrays, role
        for array in arrays:
            assert array.dtype == np.float32
            assert any(f.shape == array.shape and np.array_equal(f, array) for f in fed), role
    if kind == "nested":
        assert [len(r.fed) for r in recorders.values()] == [1, 1]
        assert not np.array_equal(drawn["tumor"][0], drawn["kidney"][0])  # the kidney-masked volume
    if kind == "sliding-window":
        assert len(drawn["fold_0"]) == 4 < len(recorders["fold_0"].fed)
        assert recorders["fold_0"].fed[0].shape[0] == 8  # the tile and its 7 mirrored copies


@pytest.mark.parametrize("kind", KINDS)
def test_manifest_is_keyed_by_role(kind, calibration_sets, packages):
    manifest = load_manifest(calibration_sets[kind])
    package = load_package(packages[kind])
    assert manifest["kind"] == kind and list(manifest["networks"]) == ROLES[kind]
    for role, facts in manifest["networks"].items():
        assert facts["sha256"] == package.network(role).sha256
        arrays = role_arrays(calibration_sets[kind], manifest, role, "calibration")
        assert facts["count"] == len(arrays) + len(role_arrays(calibration_sets[kind], manifest, role, "holdout"))
        assert arrays and all(a.dtype == np.float32 and a.ndim == 3 for a in arrays)
        shapes = roles_of(package.spec)[role].shapes
        assert all(np.all(np.asarray(a.shape) >= shapes.min[2:]) and np.all(np.asarray(a.shape) <= shapes.max[2:])
                   for a in arrays)
    assert [e["split"] for e in manifest["sources"]].count("holdout") == 1
    if kind == "sliding-window":  # the folds share their patches: stored once
        files = manifest["sources"][0]["files"]
        assert files["fold_0"] == files["fold_1"] and len(files["fold_0"]) == 4


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_variants_per_role_are_gated_on_the_whole_package(kind, precision, packages, calibration_sets, tmp_path):
    import shutil

    folder = tmp_path / "pkg"
    shutil.copytree(packages[kind], folder)
    result = runner.invoke(app, ["quantize", "--calibration", str(calibration_sets[kind]), "--model", str(folder),
                                 "--precision", precision, "--method", "minmax", "--threads", "1",
                                 "--max-dice-drop", "1.0", "--target-agreement", "0"])
    assert result.exit_code == 0, result.output
    for role in ROLES[kind]:
        model = onnx.load(folder / f"{role}.{precision}.onnx")
        card = json.loads((folder / f"{role}.{precision}.json").read_text())
        gate = card["gate"]
        assert card["precision"] == precision and gate["kind"] == kind and gate["heldout_cases"] == 1
        assert set(gate["stages"]) == set(ROLES[kind]) and 0.9 < gate["stages"][role]["argmax_agreement"] <= 1.0
        assert gate["composite_dice_delta"] is not None and 0.9 < gate["voxel_agreement"] <= 1.0
        if precision == "int8":
            assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
            assert check_tensorrt_qdq(model) == []
    _, ct = small_phantom(40)
    with Segmenter.load(folder, threads=1) as fp32, Segmenter.load(folder, threads=1, precision=precision) as reduced:
        a, b = fp32.segment(ct), reduced.segment(ct)
    assert b.geometry == ct.geometry
    assert {m["precision"] for m in b.report["models"]} == {precision}
    assert (a.labels == b.labels).mean() > 0.99


def test_nested_agreement_reads_sigmoid_foreground_not_argmax(packages):
    """One output channel: argmax is always 0, so the gate must compare the kind's own labels."""
    roles = roles_of(load_package(packages["nested"]).spec)
    logits = np.array([[[[-1.0, 2.0]]]], np.float32)  # (C=1, 1, 1, 2)
    assert roles["kidney"].decide(logits).tolist() == [[[0, 1]]] and roles["kidney"].classes == (1,)
    assert roles["kidney"].pad_value == 0.0 and roles["kidney"].calibration_patch == (56, 56, 56)


@pytest.mark.parametrize("kind, expected", [
    ("cascade", {"coarse": ((1, 1, 16, 16, 16), (1, 1, 128, 128, 128)),
                 "fine": ((1, 1, 32, 32, 32), (1, 1, 256, 256, 256))}),
    ("nested", {"kidney": ((1, 1, 168, 168, 168),) * 2, "tumor": ((1, 1, 168, 168, 168),) * 2}),
    ("sliding-window", {"fold_0": ((1, 1, 16, 32, 32), (8, 1, 16, 32, 32)),
                        "fold_1": ((1, 1, 16, 32, 32), (8, 1, 16, 32, 32))}),
])
def test_engine_profiles_per_kind(kind, expected, packages, calibration_sets, tmp_path):
    from kitsrt.calibration.workflow import engine_plans

    package = load_package(packages[kind])
    plans = engine_plans(package, "fp32")
    assert [p.role for p in plans] == list(expected)
    for plan in plans:
        assert (plan.shapes["min"], plan.shapes["max"]) == expected[plan.role]
        assert plan.onnx_path == package.model_path(package.network(plan.role))
        assert plan.plan_path.name == f"{plan.role}.plan" and plan.input_name == "image"
        assert all(a <= o <= b for a, o, b in zip(plan.shapes["min"], plan.shapes["opt"], plan.shapes["max"]))
    with pytest.raises(ModelPackageError, match="kitsrt quantize --precision int8"):
        engine_plans(package, "int8")  # no INT8 variant in this package yet


def test_sliding_window_profile_without_mirroring_is_batch_one(tmp_path):
    from tiny_packages import sliding_window_package

    from kitsrt.calibration.workflow import engine_plans

    (plan, _) = engine_plans(load_package(sliding_window_package(tmp_path / "p", mirroring=False)), "fp32")
    assert plan.shapes["min"] == plan.shapes["max"] == (1, 1, 16, 32, 32)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
@pytest.mark.parametrize("kind", KINDS)
def test_build_without_tensorrt_says_so_and_writes_nothing(kind, packages):
    before = sorted(p.name for p in packages[kind].iterdir())
    result = runner.invoke(app, ["build", "--model", str(packages[kind])])
    assert result.exit_code == BackendUnavailable.exit_code == 6
    assert "TensorRT is not installed" in result.output
    result = runner.invoke(app, ["build", "--model", str(packages[kind]), "--precision", "bf16"])
    assert result.exit_code == 2 and "expected one of fp32, fp16, int8" in result.output
    assert sorted(p.name for p in packages[kind].iterdir()) == before


def _edit_manifest(folder: Path, target: Path, edit) -> Path:
    import shutil

    shutil.copytree(folder, target)
    manifest = json.loads((target / "manifest.json").read_text())
    edit(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.mark.parametrize("case, message", [
    ("other kind", "made for a nested pipeline"),
    ("role missing", "no inputs for role 'fold_1'"),
    ("other package", "fold_0 inputs were drawn with another fold_0 model"),
])
def test_a_set_for_another_package_is_refused_in_one_line(case, message, packages, calibration_sets, tmp_path):
    sets = calibration_sets
    folder = {
        "other kind": lambda: sets["nested"],
        "role missing": lambda: _edit_manifest(sets["sliding-window"], tmp_path / "s",
                                               lambda m: m["networks"].pop("fold_1")),
        "other package": lambda: _edit_manifest(sets["sliding-window"], tmp_path / "s",
                                                lambda m: m["networks"]["fold_0"].update(sha256="0" * 64)),
    }[case]()
    target = packages["sliding-window"]
    before = sorted(p.name for p in target.iterdir())
    for precision in ("fp16", "int8"):
        result = runner.invoke(app, ["quantize", "--calibration", str(folder), "--model", str(target),
                                     "--precision", precision, "--threads", "1"])
        assert result.exit_code == ModelPackageError.exit_code == 4, result.output
        assert message in result.output and len(result.output.strip().splitlines()) <= 2
    assert sorted(p.name for p in target.iterdir()) == before


NETWORK_STAGES = {"cascade": ("coarse_net", "fine_net"), "nested": ("kidney_net", "tumor_net"),
                  "sliding-window": ("network",)}


@pytest.mark.parametrize("kind", KINDS)
def test_bench_times_any_package_per_stage(kind, packages, tmp_path):
    result = runner.invoke(app, ["bench", "--model", str(packages[kind]), "--quick", "--runs", "1", "--threads", "1",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["package"] == {"path": str(packages[kind]), "kind": kind}
    (case,) = report["cases"]
    assert list(case["configs"]) == ["onnxruntime/fp32"]  # no torch eager / MONAI baselines for a --model run
    assert case["speedup_vs_torch_eager"] is None and case["sliding_window_baseline"] is None
    stages = case["configs"]["onnxruntime/fp32"]["stages"]
    networks = sum(stages[s]["median_s"] for s in NETWORK_STAGES[kind])
    assert networks > 0 and np.isclose(stages["networks"]["median_s"], networks)
    assert stages["networks"]["median_s"] < stages["end_to_end"]["median_s"]
    assert f"{packages[kind]} onnxruntime/fp32" in (tmp_path / "bench.md").read_text()


def test_bench_refuses_a_bad_package_in_one_line(tmp_path):
    result = runner.invoke(app, ["bench", "--model", str(tmp_path / "nope"), "--quick", "--out", str(tmp_path / "o")])
    assert result.exit_code == 4 and "model package folder not found" in result.output
    assert not (tmp_path / "o" / "bench.json").exists()


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_shipped_seed004_variants_passed_their_gate_and_follow_fp32(precision, small_case):
    """The bundled seed 004 demo ships gated FP16 and INT8 variants of both roles."""
    from kitsrt.io import sha256_of
    from kitsrt.runtime.package import bundled_package_path

    demo = bundled_package_path("seed004_demo")
    for role in ("kidney", "tumor"):
        model = demo / f"{role}.{precision}.onnx"
        card = json.loads(model.with_suffix(".json").read_text())
        assert card["precision"] == precision and card["onnx_sha256"] == sha256_of(model)
        assert card["fp32_sha256"] == sha256_of(demo / f"{role}.onnx")
        gate = card["gate"]
        assert gate["kind"] == "nested" and gate["passed"] and gate["heldout_cases"] == 3
        assert gate["composite_dice_delta"] >= -gate["max_dice_drop"] == -0.005
        if precision == "int8":
            assert check_tensorrt_qdq(onnx.load(model)) == []
            assert card["mixed_precision"]["agreement"] >= card["mixed_precision"]["target"] == 0.99
    if precision == "int8":  # one run at the precision that moves most (a 168^3 pass costs seconds)
        _, ct = small_case
        with Segmenter.load(demo, threads=1) as fp32, Segmenter.load(demo, threads=1, precision=precision) as reduced:
            a, b = fp32.segment(ct), reduced.segment(ct)
        assert b.geometry == ct.geometry and (a.labels == b.labels).mean() > 0.995


def test_shipped_seed004_bf16_cards_passed_their_gate_on_the_fp32_files():
    from kitsrt.io import sha256_of
    from kitsrt.runtime.package import bundled_package_path

    demo = bundled_package_path("seed004_demo")
    for role in ("kidney", "tumor"):
        card = json.loads((demo / f"{role}.bf16.json").read_text())
        assert card["precision"] == "bf16" and card["onnx_sha256"] == sha256_of(demo / f"{role}.onnx")
        gate = card["gate"]
        assert gate["kind"] == "nested" and gate["backend"] == "openvino" and gate["heldout_cases"] == 3
        assert gate["passed"] and gate["composite_dice_delta"] >= -gate["max_dice_drop"] == -0.005
