"""Build a small but real nnU-Net v2 model folder from procedural phantoms, and run nnU-Net's own
predictor on it. Used by tests/test_nnunet_import.py and benchmarks/nnunet_side_by_side.py.

Runs as a script in its own process, because nnU-Net reads ``nnUNet_raw`` / ``nnUNet_preprocessed``
/ ``nnUNet_results`` from the environment when it is imported:

    python tests/nnunet_model.py build ROOT [--regions] [--steps 40]
    python tests/nnunet_model.py predict MODEL_FOLDER IMAGE OUTPUT [--folds 0,1] [--no-tta]

``build`` writes phantoms (slices along ITK axis i, like the KiTS19 files, so nnU-Net plans a
non-trivial ``transpose_forward``) into ``ROOT/raw``, runs nnU-Net's fingerprint extraction and
experiment planning (patch and feature counts reduced), preprocesses the cases with nnU-Net's
``DefaultPreprocessor``, initialises the stock ``nnUNetTrainer`` per fold, optionally trains each
network for a few steps on random patches (plain cross-entropy or BCE, no augmentation) and saves the
trainer's own checkpoint. By default the networks are not trained (``--steps 0``): each fold is nnU-Net's own
random initialisation with its output biases shifted so that every label covers a sizeable share
of the body (``calibrate_head``), which keeps the build to seconds on two busy cores. It prints
the model folder's path last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

DATASET_ID = 501
DATASET = f"Dataset{DATASET_ID:03d}_KitsPhantom"
TRAIN_SPACING_KJI = (6.0, 6.0, 8.0)  # mm along (k, j, i) of the written files: slices along i


def phantom_image(seed: int, size_ijk: tuple, spacing_ijk: tuple) -> tuple[sitk.Image, sitk.Image]:
    """A procedural phantom drawn with slices along k, then permuted so its slices lie along ITK
    axis i (KiTS19's layout). Returns (ct, labels) SimpleITK images on the same grid."""
    from kitsrt.phantom import procedural_label_map, synthesize_ct

    # draw on (j, k, i) -> after the permutation index i carries the slice spacing
    drawn_size = (size_ijk[1], size_ijk[2], size_ijk[0])
    drawn_spacing = (spacing_ijk[1], spacing_ijk[2], spacing_ijk[0])
    labels = procedural_label_map(drawn_size, drawn_spacing, seed=seed)
    ct = synthesize_ct(labels, seed=seed)
    images = []
    for scan, pixel in ((ct, sitk.sitkInt16), (labels, sitk.sitkUInt8)):
        image = sitk.GetImageFromArray(scan.array)
        image.SetSpacing(drawn_spacing)
        image.SetOrigin(scan.geometry.origin_mm)
        image.SetDirection(scan.geometry.direction)
        images.append(sitk.Cast(sitk.PermuteAxes(image, [2, 0, 1]), pixel))
    return images[0], images[1]


def write_dataset(raw: Path, cases: int, regions: bool) -> None:
    folder = raw / DATASET
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    for n in range(cases):
        size = (20 + 2 * (n % 2), 46 + 2 * n, 48 - 2 * n)
        ct, labels = phantom_image(100 + n, size, TRAIN_SPACING_KJI[::-1])
        sitk.WriteImage(ct, str(folder / "imagesTr" / f"case_{n:03d}_0000.nii.gz"))
        sitk.WriteImage(labels, str(folder / "labelsTr" / f"case_{n:03d}.nii.gz"))
    labels_json = ({"background": 0, "kidney_and_tumor": [1, 2], "tumor": 2} if regions
                   else {"background": 0, "kidney": 1, "tumor": 2})
    dataset = {"channel_names": {"0": "CT"}, "labels": labels_json, "numTraining": cases,
               "file_ending": ".nii.gz"}
    if regions:
        dataset["regions_class_order"] = [1, 2]
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))


def plan(features: int) -> dict:
    """nnU-Net's fingerprint and 3d_fullres plan, with a small memory target and ``features`` base
    features so that the network and its patch stay small."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints

    extract_fingerprints([DATASET_ID], check_dataset_integrity=False, num_processes=1, clean=True, verbose=False)
    planner = ExperimentPlanner(DATASET_ID, gpu_memory_target_in_gb=0.5)
    planner.UNet_base_num_features = features
    planner.UNet_max_features_3d = 4 * features
    planner.UNet_reference_com_nfeatures = features
    planner.plan_experiment()
    return json.loads((Path(os.environ["nnUNet_preprocessed"]) / DATASET / "nnUNetPlans.json").read_text())


def preprocessed_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """Every training case through nnU-Net's own preprocessing (written to nnUNet_preprocessed,
    as ``nnUNetv2_preprocess`` does), read back as (data (1, z, y, x), seg (1, z, y, x))."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    preprocess_dataset(DATASET_ID, configurations=("3d_fullres",), num_processes=[1], show_progress_bar=False)
    folder = Path(os.environ["nnUNet_preprocessed"]) / DATASET / "nnUNetPlans_3d_fullres"
    dataset = nnUNetDatasetBlosc2(str(folder))
    out = []
    for key in dataset.identifiers:
        data, seg, _, _ = dataset.load_case(key)
        out.append((np.asarray(data[:], np.float32), np.asarray(seg[:], np.int16)))
    return out


def train_fold(trainer, cases, steps: int, seed: int, regions: bool) -> None:
    """A few Adam steps on random patches (no augmentation; the point is a network whose
    prediction is not noise, not a good model)."""
    import torch

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net = trainer.network
    trainer.set_deep_supervision_enabled(False)
    patch = trainer.configuration_manager.patch_size
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(steps):
        images, targets = [], []
        for _ in range(2):
            data, seg = cases[int(rng.integers(len(cases)))]
            data, seg = pad_to(data, patch), pad_to(seg, patch)
            start = [int(rng.integers(0, s - p + 1)) for s, p in zip(data.shape[1:], patch)]
            region = tuple(slice(a, a + p) for a, p in zip(start, patch))
            images.append(data[(slice(None), *region)])
            targets.append(np.maximum(seg[(0, *region)], 0))
        x = torch.from_numpy(np.stack(images)).float()
        y = torch.from_numpy(np.stack(targets)).long()
        logits = net(x)
        if regions:
            target = torch.stack([(y >= 1), (y == 2)], 1).float()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        else:
            loss = torch.nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    trainer.set_deep_supervision_enabled(True)


def calibrate_head(trainer, cases, regions: bool) -> None:
    """Shift the output layer's biases so that every label covers a sizeable share of the training
    images (an untrained network otherwise paints one label everywhere). The network stays a
    deterministic function of its input; its label boundaries run through many voxels, so any
    difference in preprocessing shows up in the label map."""
    import torch

    net = trainer.network
    trainer.set_deep_supervision_enabled(False)
    net.eval()
    with torch.no_grad():
        patch = trainer.configuration_manager.patch_size
        crops = [pad_to(data, patch)[(slice(None), *(slice(0, p) for p in patch))] for data, _ in cases]
        logits = torch.cat([net(torch.from_numpy(crop[None]).float()) for crop in crops], 0)
        logits = logits.transpose(0, 1).reshape(logits.shape[1], -1)
        head = net.decoder.seg_layers[-1]
        if regions:  # region i is painted where its logit > 0: ~45% kidney-and-tumor, ~20% tumor
            for channel, share in enumerate((0.45, 0.2)):
                head.bias[channel] -= torch.quantile(logits[channel], 1.0 - share)
        else:  # centre each channel: argmax shares roughly even
            head.bias -= logits.median(dim=1).values
    trainer.set_deep_supervision_enabled(True)


def pad_to(array: np.ndarray, patch) -> np.ndarray:
    pad = [(0, 0)] + [(0, max(p - s, 0)) for s, p in zip(array.shape[1:], patch)]
    return np.pad(array, pad, constant_values=array.min())


def build(root: Path, regions: bool, steps: int, folds: int, features: int) -> Path:
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    torch.set_num_threads(int(os.environ.get("KITSRT_NNUNET_THREADS", "2")))
    raw = root / "raw"
    write_dataset(raw, cases=4, regions=regions)
    plans = plan(features)
    dataset_json = json.loads((raw / DATASET / "dataset.json").read_text())
    cases = preprocessed_cases()
    model_folder, weights = None, None
    for fold in range(folds):
        trainer = nnUNetTrainer(dict(plans, continue_training=False), "3d_fullres", fold, dataset_json,
                                device=torch.device("cpu"))
        torch.manual_seed(1234 + fold)  # nnU-Net's initialisation, made repeatable
        trainer.initialize()
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if weights is not None and steps:  # trained folds continue from the previous one
            trainer.network.load_state_dict(weights)
        if steps:
            train_fold(trainer, cases, steps if fold == 0 else max(steps // 4, 1), seed=fold, regions=regions)
        calibrate_head(trainer, cases, regions)
        weights = trainer.network.state_dict()
        Path(trainer.output_folder).mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(os.path.join(trainer.output_folder, "checkpoint_final.pth"))
        model_folder = Path(trainer.output_folder_base)
    (model_folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (model_folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    fingerprint = root / "preprocessed" / DATASET / "dataset_fingerprint.json"
    (model_folder / "dataset_fingerprint.json").write_text(fingerprint.read_text())
    return model_folder


def predict(model_folder: Path, image: Path, output: Path, folds: list[int], tta: bool) -> None:
    """nnU-Net's own ``nnUNetPredictor`` on the CPU, writing a label map next to nothing else."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(int(os.environ.get("KITSRT_NNUNET_THREADS", "2")))
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=tta,
                                perform_everything_on_device=False, device=torch.device("cpu"),
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_folder), use_folds=tuple(folds),
                                                   checkpoint_name="checkpoint_final.pth")
    predictor.predict_from_files([[str(image)]], [str(output).removesuffix(".nii.gz")],
                                 save_probabilities=False, overwrite=True, num_processes_preprocessing=1,
                                 num_processes_segmentation_export=1)


def _environment(root: Path) -> None:
    for name, sub in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "preprocessed"),
                      ("nnUNet_results", "results")):
        os.environ[name] = str(root / sub)
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("nnUNet_compile", "false")
    os.environ.setdefault("nnUNet_n_proc_DA", "1")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("root", type=Path)
    b.add_argument("--regions", action="store_true")
    b.add_argument("--steps", type=int, default=0)
    b.add_argument("--folds", type=int, default=2)
    b.add_argument("--features", type=int, default=4)
    p = sub.add_parser("predict")
    p.add_argument("model_folder", type=Path)
    p.add_argument("image", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--folds", default="0")
    p.add_argument("--no-tta", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "build":
        _environment(args.root.resolve())
        print(build(args.root.resolve(), args.regions, args.steps, args.folds, args.features))
    else:
        _environment(args.model_folder.resolve().parents[2])
        predict(args.model_folder, args.image, args.output, [int(f) for f in args.folds.split(",")],
                not args.no_tta)


if __name__ == "__main__":
    main(sys.argv[1:])
