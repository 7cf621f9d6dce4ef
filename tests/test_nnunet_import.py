"""`kitsrt import nnunet`: a real (small) nnU-Net v2 model folder, built here with nnU-Net's own
fingerprinting, planning, preprocessing and trainer, imported and run torch-free; its label map is
compared with nnU-Net's own ``nnUNetPredictor`` on a held-out phantom.

The held-out phantom has its slices along ITK axis i (nnU-Net plans ``transpose_forward`` [2, 0, 1])
and an anisotropic spacing (2.5, 2.5, 9 mm vs the 6 x 6 x 8 mm target), so resampling runs nnU-Net's
"separate z" path both ways; two folds are ensembled with mirroring on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from kitsrt.cli import app

pytest.importorskip("nnunetv2", reason="nnunetv2 is not installed (pip install 'kitsrt[nnunet]')")
torch = pytest.importorskip("torch")

HERE = Path(__file__).resolve().parent
runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _script(*args) -> str:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), nnUNet_compile="false")
    done = subprocess.run([sys.executable, str(HERE / "nnunet_model.py"), *map(str, args)], env=env,
                          capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


@pytest.fixture(scope="session")
def nnunet(tmp_path_factory):
    """The model folder (regions, 2 folds), a held-out phantom, nnU-Net's prediction on it and the
    imported package."""
    sys.path.insert(0, str(HERE))
    from nnunet_model import phantom_image

    root = tmp_path_factory.mktemp("nnunet")
    model_folder = Path(_script("build", root / "nnunet", "--regions"))
    ct, truth = phantom_image(7, (22, 120, 116), (9.0, 2.5, 2.5))
    image = root / "heldout_0000.nii.gz"
    sitk.WriteImage(ct, str(image))
    reference = root / "nnunet_pred.nii.gz"
    _script("predict", model_folder, image, reference, "--folds", "0,1")
    package = root / "package"
    result = run("import", "nnunet", model_folder, "-o", package)
    assert result.exit_code == 0, result.output
    return SimpleNamespace(model_folder=model_folder, image=image, reference=reference, package=package,
                           root=root)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def per_class_dice(ours: np.ndarray, ref: np.ndarray) -> dict[int, float]:
    return {c: dice(ours == c, ref == c) for c in (1, 2)}


def geometry(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def kitsrt_labels(nnunet, **changes) -> np.ndarray:
    """The imported pipeline on the held-out scan (onnxruntime), with spec fields changed."""
    import onnxruntime as ort

    from kitsrt.runtime.kinds.sliding_window import segment_array
    from kitsrt.runtime.pipeline import load_pipeline

    spec = load_pipeline(nnunet.package / "pipeline.json").model_copy(update=changes)
    sessions = [ort.InferenceSession(str(nnunet.package / f.model), providers=["CPUExecutionProvider"])
                for f in spec.folds]
    predictors = [lambda batch, s=s: s.run(["logits"], {"image": batch})[0] for s in sessions]
    image = sitk.ReadImage(str(nnunet.image))
    return segment_array(sitk.GetArrayFromImage(image), image.GetSpacing()[::-1], spec, predictors)


def test_package_reproduces_nnunet_predictor(nnunet, tmp_path):
    out = tmp_path / "seg.nii.gz"
    result = run("infer", nnunet.image, "--model", nnunet.package, "-o", out, "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    ours, ref, scan = (sitk.ReadImage(str(p)) for p in (out, nnunet.reference, nnunet.image))
    assert geometry(ours) == geometry(scan) == geometry(ref)
    ours, ref = sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(ref)
    counts = np.bincount(ref.ravel(), minlength=3)
    assert counts[1] > 0.05 * ref.size and counts[2] > 0.02 * ref.size  # both labels present: a real test
    scores = per_class_dice(ours, ref)
    assert min(scores.values()) >= 0.995, scores
    assert np.mean(ours == ref) >= 0.999
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["kind"] == "sliding-window" and report["kidney_found"]
    assert {"preprocess", "network", "postprocess", "measure"} <= set(report["timings_s"])


@pytest.mark.parametrize("broken", ["normalization", "transpose", "label_map"])
def test_a_broken_step_is_caught(nnunet, broken):
    """The comparison above fails when one step is wrong (so it can fail at all)."""
    from kitsrt.runtime.pipeline import load_pipeline

    spec = load_pipeline(nnunet.package / "pipeline.json")
    changes = {
        "normalization": {"normalization": spec.normalization.model_copy(update={"mean": spec.normalization.mean
                                                                                  + spec.normalization.std})},
        "transpose": {"transpose_forward": (0, 1, 2), "transpose_backward": (0, 1, 2)},
        "label_map": {"outputs": spec.outputs.model_copy(update={"label_map": {"0": 0, "1": 2, "2": 1}})},
    }[broken]
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(nnunet.reference)))
    scores = per_class_dice(kitsrt_labels(nnunet, **changes), ref)
    assert min(scores.values()) < 0.995, scores


def test_preprocessing_is_nnunets_bit_for_bit(nnunet):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from kitsrt.runtime.kinds.sliding_window import preprocess
    from kitsrt.runtime.pipeline import load_pipeline

    plans = json.loads((nnunet.model_folder / "plans.json").read_text())
    dataset = json.loads((nnunet.model_folder / "dataset.json").read_text())
    manager = PlansManager(plans)
    expected, _, props = DefaultPreprocessor(verbose=False).run_case(
        [str(nnunet.image)], None, manager, manager.get_configuration("3d_fullres"), dataset)
    image = sitk.ReadImage(str(nnunet.image))
    spec = load_pipeline(nnunet.package / "pipeline.json")
    got, record = preprocess(sitk.GetArrayFromImage(image), image.GetSpacing()[::-1], spec)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)
    assert [list(b) for b in record["bbox"]] == [list(b) for b in props["bbox_used_for_cropping"]]


def _copy_folder(nnunet, tmp_path, name: str | None = None) -> Path:
    target = tmp_path / "Dataset501_KitsPhantom" / (name or nnunet.model_folder.name)
    shutil.copytree(nnunet.model_folder, target)
    return target


def _edit_checkpoint(path: Path, edit) -> None:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    edit(checkpoint)
    torch.save(checkpoint, path)


def _edit_plans(folder: Path, edit) -> None:
    plans = json.loads((folder / "plans.json").read_text())
    edit(plans)
    (folder / "plans.json").write_text(json.dumps(plans))


class NotWeights:  # a pickled object that weights_only=True must refuse
    pass


BAD_FOLDERS = {
    "not a folder": (lambda f: (shutil.rmtree(f), f.write_text("x")), "not a folder"),
    "no plans.json": (lambda f: (f / "plans.json").unlink(), "not an nnU-Net v2 model folder"),
    "nnU-Net v1": (lambda f: (f / "plans.json").rename(f / "plans.pkl"), "nnU-Net v1"),
    "plans before 2.2": (lambda f: _edit_plans(f, lambda p: p["configurations"]["3d_fullres"].pop("architecture")),
                         "nnU-Net < 2.2"),
    "normalisation": (lambda f: _edit_plans(f, lambda p: p["configurations"]["3d_fullres"].update(
        normalization_schemes=["MyNormalization"])), "normalization scheme 'MyNormalization'"),
    "other configuration": (lambda f: _edit_checkpoint(f / "fold_0" / "checkpoint_final.pth", lambda c: c[
        "init_args"].update(configuration="3d_lowres")), "trained for configuration '3d_lowres'"),
    "weights do not fit": (lambda f: _edit_checkpoint(f / "fold_0" / "checkpoint_final.pth", lambda c: c[
        "network_weights"].pop(next(iter(c["network_weights"])))), "missing key"),
    "unsafe pickle": (lambda f: _edit_checkpoint(f / "fold_0" / "checkpoint_final.pth", lambda c: c.update(
        logging=NotWeights())), "weights_only=True"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_bad_model_folder_is_one_line_and_leaves_nothing(nnunet, tmp_path, case):
    folder = _copy_folder(nnunet, tmp_path)
    breaker, message = BAD_FOLDERS[case]
    breaker(folder)
    out = tmp_path / "pkg"
    result = run("import", "nnunet", folder, "-o", out, "--folds", "0")
    assert result.exit_code == 4, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) <= 2  # one line (rich may wrap it once)
    assert not out.exists() and not list(tmp_path.glob(".pkg*"))


def test_missing_fold_and_2d_configuration_are_refused(nnunet, tmp_path):
    result = run("import", "nnunet", nnunet.model_folder, "-o", tmp_path / "pkg", "--folds", "0,3")
    assert result.exit_code == 4 and "fold 3 has no checkpoint_final.pth" in result.output
    folder = _copy_folder(nnunet, tmp_path, "nnUNetTrainer__nnUNetPlans__2d")
    _edit_checkpoint(folder / "fold_0" / "checkpoint_final.pth",
                     lambda c: c["init_args"].update(configuration="2d"))
    result = run("import", "nnunet", folder, "-o", tmp_path / "pkg", "--folds", "0")
    assert result.exit_code == 4 and "is 2D" in result.output
    assert not (tmp_path / "pkg").exists()


def test_numpy_scalars_in_the_training_log_load_safely(nnunet, tmp_path):
    """Real nnU-Net checkpoints log NumPy floats; the safe loader allows exactly those."""
    folder = _copy_folder(nnunet, tmp_path)
    _edit_checkpoint(folder / "fold_0" / "checkpoint_final.pth", lambda c: c.update(
        _best_ema=np.float64(0.5), logging={"mean_fg_dice": [np.float64(0.1), np.float32(0.2)]}))
    from kitsrt.export.nnunet_folder import load_checkpoint_safely

    checkpoint = load_checkpoint_safely(folder / "fold_0" / "checkpoint_final.pth")
    assert checkpoint["_best_ema"] == 0.5 and "network_weights" in checkpoint


@pytest.mark.parametrize("shape, spacing, target", [
    ((9, 40, 44), (3.0, 1.0, 1.0), (1.5, 1.6, 1.6)),  # up in z, down in plane
    ((30, 21, 23), (0.8, 0.8, 0.8), (1.3, 1.1, 0.9)),  # isotropic: one 3-D cubic resize
    ((12, 50, 40), (5.0, 1.2, 1.2), (2.5, 2.4, 2.4)),  # separate z, z doubled (ties in the order-0 rounding)
    ((44, 30, 12), (1.0, 1.0, 4.5), (1.0, 1.5, 3.0)),  # separate z along the last axis
])
def test_resampling_is_nnunets(shape, spacing, target):
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape, resample_data_or_seg_to_shape

    from kitsrt.runtime import nnunet_ops as ops

    new = ops.new_shape(shape, spacing, target)
    assert list(new) == list(compute_new_shape(shape, spacing, target))
    for dtype in (np.float32, np.float16):  # the scan (float32), the blended logits (float16)
        data = np.random.default_rng(1).normal(size=(2, *shape)).astype(dtype)
        for order in (3, 1):
            expected = resample_data_or_seg_to_shape(data, new, spacing, target, is_seg=False, order=order,
                                                     order_z=0, force_separate_z=None)
            got = ops.resample(data, new, spacing, target, order, 0, None)
            assert got.dtype == expected.dtype == dtype
            assert np.array_equal(got, expected)


@pytest.mark.parametrize("shape, spacing, target", [
    ((9, 40, 44), (3.0, 1.0, 1.0), (1.5, 1.6, 1.6)),  # a0 shrinks, in plane grows: one 3-D linear resize
    ((12, 50, 40), (5.0, 1.2, 1.2), (2.5, 2.4, 2.4)),  # a0 shrinks; separate z (order 0 along a0)
    ((44, 30, 12), (1.0, 1.0, 4.5), (1.0, 1.5, 3.0)),  # a0 kept; separate z along the last axis
    ((10, 30, 36), (0.8, 0.9, 0.9), (2.0, 1.5, 1.5)),  # a0 grows (thin slices): 3-D linear
    ((10, 12, 24), (1.0, 4.0, 1.0), (2.0, 2.0, 2.0)),  # a0 grows; separate z along a1
])
def test_logits_resampled_in_slabs_follow_nnunets_resampling(shape, spacing, target):
    """Logits (on the network's grid: ``shape`` at ``target``) back to the scan's ``spacing``."""
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    from kitsrt.runtime import nnunet_ops as ops

    new = ops.new_shape(shape, target, spacing)  # from the network's grid back to the scan's
    logits = np.random.default_rng(3).normal(size=(2, *shape)).astype(np.float16)
    expected = resample_data_or_seg_to_shape(logits.astype(np.float64), new, target, spacing, is_seg=False, order=1,
                                             order_z=0, force_separate_z=None)
    for slab_voxels in (1, 1000, 10**7):  # a row per slab, several rows, all at once
        got = np.zeros((2, *new), np.float32)
        for rows, slab in ops.resampled_slabs(logits, new, target, spacing, 1, 0, None, slab_voxels=slab_voxels):
            got[:, rows] = slab
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.mean(np.sign(got) == np.sign(expected)) > 0.9999
    cubic = next(ops.resampled_slabs(logits, new, target, spacing, 3, 0, None, slab_voxels=10**7))[1]
    assert np.array_equal(cubic, ops.resample(logits, new, target, spacing, 3, 0, None).astype(np.float32))


@pytest.mark.parametrize("mode", ["regions", "softmax"])
def test_labels_in_slabs_equal_labels_at_once(mode):
    from kitsrt.runtime.kinds.sliding_window import to_labels
    from kitsrt.runtime.sliding_window_spec import Outputs

    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 13, 9, 7)).astype(np.float16)
    outputs = Outputs(mode=mode, channels=3, regions_class_order=(1, 2, 3) if mode == "regions" else (),
                      label_map={"0": 0, "1": 1, "2": 2, "3": 2})
    if mode == "softmax":
        expected = logits.argmax(0)
    else:  # regions painted in order: a later region overwrites an earlier one
        expected = np.zeros(logits.shape[1:], np.uint8)
        for channel, value in enumerate((1, 2, 3)):
            expected[logits[channel].astype(np.float32) > 0] = value
    assert len(np.unique(expected)) == (4 if mode == "regions" else 3)  # every label occurs
    for slab_voxels in (1, 63, 64, 10**6):  # one row of 9 x 7 per slab, a row and a bit, all at once
        got = to_labels(logits, outputs, slab_voxels=slab_voxels)
        assert got.dtype == np.uint8 and np.array_equal(got, expected)


def test_tiling_and_gaussian_are_nnunets():
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

    from kitsrt.runtime import nnunet_ops as ops

    for shape, patch in (((110, 64, 200), (64, 64, 96)), ((25, 48, 56), (24, 48, 56))):
        assert ops.sliding_window_steps(shape, patch, 0.5) == compute_steps_for_sliding_window(shape, patch, 0.5)
    expected = compute_gaussian((24, 48, 56), 1.0 / 8, 10, torch.float16, torch.device("cpu")).numpy()
    assert np.array_equal(ops.gaussian_importance((24, 48, 56), dtype=np.float16), expected)


@pytest.fixture(scope="session")
def nnunet_calibration(nnunet, tmp_path_factory):
    """A copy of the imported package and its calibration set: three small phantoms at the training
    geometry (slices along i, as nnU-Net planned for), one held out, through ``build_set``."""
    from nnunet_model import phantom_image

    from kitsrt.calibration.dataset import Source, build_set
    from kitsrt.io import read_ct, read_label_map
    from kitsrt.runtime.package import load_package
    from kitsrt.runtime.segmenter import Segmenter

    root = tmp_path_factory.mktemp("nnunet_toolchain")
    package = root / "package"
    shutil.copytree(nnunet.package, package)
    sources = []
    for n in range(3):
        ct, labels = phantom_image(300 + n, (24, 64, 60), (8.0, 6.0, 6.0))
        sitk.WriteImage(ct, str(root / f"ct_{n}.nii.gz"))
        sitk.WriteImage(labels, str(root / f"labels_{n}.nii.gz"))
        sources.append(Source(f"small_{n}", read_ct(root / f"ct_{n}.nii.gz"),
                              read_label_map(root / f"labels_{n}.nii.gz"), str(root / f"ct_{n}.nii.gz")))
    with Segmenter.load(package, threads=1) as segmenter:
        build_set(sources, load_package(package), segmenter, root / "calib", holdout_fraction=0.34, seed=2,
                  tiles_per_case=2)
    return SimpleNamespace(package=package, calib=root / "calib")


@pytest.mark.parametrize("precision, options, agreement", [
    ("fp16", [], 0.999),
    ("int8", ["--method", "minmax", "--target-agreement", "0.99", "--probe-inputs", "2"], 0.98),
])
def test_imported_package_calibrates_quantizes_and_infers(nnunet, nnunet_calibration, tmp_path, precision, options,
                                                          agreement):
    """calibrate -> quantize (behind the whole-package gate) -> infer at that precision, on the
    imported nnU-Net package exactly as on the demo; the held-out case is read back from its file."""
    from kitsrt.calibration.dataset import load_manifest

    package, calib = nnunet_calibration.package, nnunet_calibration.calib
    manifest = load_manifest(calib)
    assert manifest["kind"] == "sliding-window" and list(manifest["networks"]) == ["fold_0", "fold_1"]
    result = run("quantize", "--calibration", calib, "--model", package, "--precision", precision,
                 "--max-dice-drop", "1.0", "--threads", "1", *options)
    assert result.exit_code == 0, result.output
    for fold in ("fold_0", "fold_1"):
        card = json.loads((package / f"{fold}.{precision}.json").read_text())
        gate = card["gate"]
        assert gate["kind"] == "sliding-window" and gate["heldout_cases"] == 1 and gate["passed"]
        assert gate["composite_dice_delta"] is not None and gate["stages"][fold]["inputs"] == 2
        if precision == "int8":
            assert card["mixed_precision"]["agreement"] >= 0.99
            assert card["calibration"]["inputs"] == 4  # 2 patches x 2 calibration cases
    outputs = {}
    for run_precision in ("fp32", precision):
        out = tmp_path / f"{run_precision}.nii.gz"
        result = run("infer", nnunet.image, "--model", package, "--precision", run_precision, "-o", out,
                     "--report", tmp_path / f"{run_precision}.json", "--threads", "1")
        assert result.exit_code == 0, result.output
        outputs[run_precision] = sitk.ReadImage(str(out))
        report = json.loads((tmp_path / f"{run_precision}.json").read_text())
        assert {m["precision"] for m in report["models"]} == {run_precision}
    assert geometry(outputs[precision]) == geometry(sitk.ReadImage(str(nnunet.image)))
    fp32, reduced = (sitk.GetArrayFromImage(outputs[p]) for p in ("fp32", precision))
    assert np.mean(fp32 == reduced) >= agreement
