"""The demo v2 recipe: augmentation, the demo-v2 preset, and domain-randomised training data."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training tests need the export extra (torch)")

from kitsrt.phantom import procedural_label_map, synthesize_ct  # noqa: E402
from kitsrt.runtime.pipeline import seed002_preset  # noqa: E402
from kitsrt.training.augment import augment_batch  # noqa: E402
from kitsrt.training.data import STYLE_SEED0, decoy_volume, styled_cases  # noqa: E402
from kitsrt.training.data import Volume  # noqa: E402
from kitsrt.training.trainer import DEMO_V2, _batch, preset_config, training_plan  # noqa: E402


def _batch_with_a_cube(n: int = 4):
    """Images of air (-1) with a bright cube (+0.5) exactly where the labels say 1."""
    labels = torch.zeros(n, 32, 32, 32, dtype=torch.int64)
    labels[:, 8:20, 10:22, 4:14] = 1
    images = torch.where(labels[:, None] == 1, 0.5, -1.0).float()
    return images, labels


def test_augmentation_is_deterministic_and_keeps_image_and_labels_aligned():
    images, labels = _batch_with_a_cube()
    a = augment_batch(images, labels, None, np.random.default_rng(3))
    b = augment_batch(images, labels, None, np.random.default_rng(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] is None
    out_images, out_labels, _ = augment_batch(images, labels, None, np.random.default_rng(4))
    assert out_images.shape == images.shape and out_labels.shape == labels.shape
    assert out_labels.dtype == labels.dtype and set(out_labels.unique().tolist()) <= {0, 1}
    assert float(out_images.min()) >= -1.0 and float(out_images.max()) <= 1.0  # the window's range
    for n in range(images.shape[0]):
        inside, outside = out_images[n, 0][out_labels[n] == 1], out_images[n, 0][out_labels[n] == 0]
        assert float(inside.mean()) - float(outside.mean()) > 0.8  # the cube moved with its labels


def test_augmentation_flips_left_right_and_changes_intensities():
    images, labels = _batch_with_a_cube(16)
    out_images, out_labels, _ = augment_batch(images, labels, None, np.random.default_rng(0))
    flipped = [n for n in range(16) if torch.equal(out_labels[n], labels[n].flip(-1))]
    assert 0 < len(flipped) < 16
    z_center = lambda lab: float(torch.nonzero(lab)[:, 0].float().mean())
    assert all(abs(z_center(out_labels[n]) - z_center(labels[n])) < 1.0 for n in range(16))  # never flipped in z
    cube_values = torch.stack([out_images[n, 0][out_labels[n] == 1].median() for n in range(16)])
    assert float(cube_values.max() - cube_values.min()) > 0.02  # HU scale/shift differs per crop


def test_masks_follow_the_geometric_transform():
    images, labels = _batch_with_a_cube(8)
    masks = (labels > 0).to(torch.uint8)
    _, out_labels, out_masks = augment_batch(images, labels, masks, np.random.default_rng(1), low=0.0)
    assert torch.equal(out_masks.long(), (out_labels > 0).long())


def test_demo_v2_preset_is_larger_and_augmented_while_the_old_recipe_is_not():
    fine, old = preset_config("fine", DEMO_V2), preset_config("fine")
    assert fine.augment and not old.augment
    from kitsrt.models import build_model

    count = lambda config: sum(p.numel() for p in build_model(config.model).parameters())
    assert count(fine) > 5 * count(old)
    assert preset_config("coarse", DEMO_V2).model.divisibility == 16
    spec, roles = training_plan(DEMO_V2, "coarse")
    assert roles == ["coarse"] and spec.coarse.spacing_mm == (6.0, 6.0, 6.0)


def test_augmented_batches_train_without_leaving_the_window():
    rng = np.random.default_rng(0)
    volume = Volume(np.where(rng.random((40, 40, 40)) > 0.5, 0.3, -1.0).astype(np.float32),
                    (rng.random((40, 40, 40)) > 0.7).astype(np.uint8), "synthetic")
    config = preset_config("fine", DEMO_V2, crop=(32, 32, 32), batch_size=2)
    images, labels, masks = _batch([volume], config, np.random.default_rng(0))
    assert images.shape == (2, 1, 32, 32, 32) and labels.shape == (2, 32, 32, 32) and masks is None
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0


def test_styled_cases_hold_out_and_seed_deterministically(tmp_path):
    for case in ("case_00007", "case_00021"):
        (tmp_path / case).mkdir()
        (tmp_path / case / "segmentation.nii.gz").touch()
    cases = styled_cases(tmp_path, {"case_00021"}, styles_per_case=2, procedural=3)
    assert [c.name for c in cases] == ["case_00007_style0", "case_00007_style1", "procedural_20000",
                                       "procedural_20001", "procedural_20002"]
    assert [c.seed for c in cases[:2]] == [STYLE_SEED0 + 70, STYLE_SEED0 + 71]
    assert cases[2].label_path is None and len({c.seed for c in cases}) == 5


def test_decoy_volume_lies_on_the_fine_grid_with_true_labels():
    labels = procedural_label_map((96, 96, 40), (4.0, 4.0, 7.0), seed=3)
    ct = synthesize_ct(labels, seed=3)
    spec = seed002_preset()
    decoys = [decoy_volume(ct, labels, spec, "p3", np.random.default_rng(seed)) for seed in range(4)]
    for decoy in decoys:
        assert decoy.image.shape == decoy.labels.shape and decoy.case == "p3_decoy"
        assert decoy.image.dtype == np.float32 and set(np.unique(decoy.labels)) <= {0, 1, 2}
    assert any(decoy.labels.sum() < 0.02 * decoy.labels.size for decoy in decoys)  # mostly off the kidneys


def test_tumor_weight_raises_the_cost_of_missed_tumor_only():
    from dataclasses import replace

    from kitsrt.training.trainer import compute_loss

    config = preset_config("fine", None)
    labels = torch.zeros(1, 8, 8, 8, dtype=torch.int64)
    labels[0, 2:4, 2:4, 2:4] = 2
    labels[0, 4:6, 4:6, 4:6] = 1
    logits = torch.zeros(1, 3, 8, 8, 8)
    logits[:, 0] = 2.0  # background everywhere: kidney and tumor both missed
    plain, weighted = (compute_loss(logits, labels, None, replace(config, tumor_ce_weight=w)) for w in (1.0, 10.0))
    assert weighted > plain
    labels_without_tumor = torch.where(labels == 2, 1, labels)
    same = [compute_loss(logits, labels_without_tumor, None, replace(config, tumor_ce_weight=w)) for w in (1.0, 10.0)]
    assert torch.isclose(same[0], same[1])  # no tumor voxel: the weight changes nothing


def test_tumor_weight_option_is_checked():
    from typer.testing import CliRunner

    from kitsrt.cli import app

    result = CliRunner().invoke(app, ["train", "nowhere", "--stage", "fine", "-o", "out", "--tumor-weight", "nan"])
    assert result.exit_code == 2 and "--tumor-weight" in result.output


def test_stop_at_then_resume_follows_the_uninterrupted_schedule(tmp_path):
    """A run stopped with ``stop_at`` and resumed ends with the same weights as one run straight
    through the same schedule (the learning rate's decay is that of ``steps``, not of ``stop_at``)."""
    from dataclasses import replace

    from kitsrt.models.vbnet import PRESETS
    from kitsrt.training.trainer import TrainConfig, train

    labels = np.zeros((24, 24, 24), np.uint8)
    labels[6:16, 8:18, 5:15] = 1
    image = np.where(labels > 0, 0.5, -1.0).astype(np.float32)
    volumes = [Volume(image, labels, "cube")]
    config = TrainConfig(stage="coarse", model=replace(PRESETS["tiny"], num_classes=3), steps=6, batch_size=1,
                         crop=(16, 16, 16), threads=1, checkpoint_every=100)
    load = lambda folder: torch.load(tmp_path / folder / "checkpoint.pt", weights_only=True)["model"]
    straight = train(volumes, config, tmp_path / "straight")
    stopped = train(volumes, config, tmp_path / "split", stop_at=2)
    at_stop = load("split")
    from kitsrt.export.onnx_export import load_checkpoint

    card_training = load_checkpoint(tmp_path / "split" / "checkpoint.pt").training
    assert (card_training["steps"], card_training["trained_steps"]) == (6, 2)  # the card says where it stopped
    shorter = train(volumes, replace(config, steps=2), tmp_path / "short")
    assert not all(torch.equal(at_stop[k], load("short")[k]) for k in at_stop)  # not a 2-step schedule
    resumed = train(volumes, config, tmp_path / "split", resume=True)
    assert (straight["steps"], stopped["steps"], shorter["steps"], resumed["steps"]) == (6, 2, 2, 6)
    a, b = load("straight"), load("split")
    assert all(torch.equal(a[k], b[k]) for k in a)
