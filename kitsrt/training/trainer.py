"""The reference trainer: random crops, Adam with a cosine schedule.

Seed 002 (``loss="gdice+ce"``): generalized Dice + cross-entropy. Coarse crops are drawn anywhere in
the 6 mm volume; 90% of fine crops are centred on a random kidney or tumor voxel of a 1 mm VOI (the
paper's "only in the area indicated by the ground-truth mask"), half of those on a tumor voxel when
the VOI has one.
Seed 004 (``loss="dice+bce"``, one sigmoid channel): the paper's negative Dice plus binary
cross-entropy (added here so that a short CPU training converges); for the tumor network both count
only voxels inside the kidney mask (the paper's kidney-masked Dice). 70% of kidney crops and 90% of
tumor crops are centred on the structure (tumor crops: half on tumor, half on kidney).
``augment=True`` (the demo v2 recipe, ``preset="demo-v2"``) adds intensity and geometric augmentation
of every crop (``kitsrt.training.augment``); off by default, so older recipes reproduce exactly.
Deterministic for a seed on a given machine and thread count. A checkpoint is a plain dict of
tensors and numbers (loadable with ``torch.load(weights_only=True)``) next to ``config.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kitsrt.models import build_model
from kitsrt.models.vbnet import PRESETS
from kitsrt.models.vnet import PRESETS as VNET_PRESETS
from kitsrt.training.data import Volume

PAD_INPUT = -1.0  # scaled value of HU at or below the window's low end (seed 002)


@dataclass(frozen=True)
class TrainConfig:
    stage: str  # the network's role: coarse, fine (seed 002); kidney, tumor (seed 004)
    model: object  # VBNetConfig or VNetConfig
    steps: int = 300
    batch_size: int = 2
    crop: tuple[int, int, int] = (64, 64, 64)
    learning_rate: float = 2e-3
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 50
    ce_weight: float = 1.0
    tumor_ce_weight: float = 1.0  # the tumor class's (label 2) weight in the cross-entropy of "gdice+ce"
    loss: str = "gdice+ce"  # or "dice+bce" (one sigmoid channel, seed 004)
    pad_input: float = PAD_INPUT  # the normalised value of air, for crops that overhang the volume
    augment: bool = False  # intensity + geometric augmentation (kitsrt.training.augment)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["model"] = asdict(self.model)
        return data


def generalized_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean over foreground classes of 2*sum(p*g) / (sum(p^2) + sum(g^2)) (seed 002, eq. 1)."""
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target.long(), logits.shape[1]).permute(0, 4, 1, 2, 3).to(probs.dtype)
    dims = (0, 2, 3, 4)
    numerator = 2 * (probs * onehot).sum(dims)
    denominator = (probs**2).sum(dims) + (onehot**2).sum(dims) + 1e-5
    return 1 - (numerator / denominator)[1:].mean()


def masked_dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """1 - soft Dice of sigmoid(logits) against ``target`` (N, D, H, W), plus binary cross-entropy;
    both only over voxels where ``mask`` is set (all voxels when None)."""
    logits = logits[:, 0]
    target = target.to(logits.dtype)
    weight = torch.ones_like(target) if mask is None else mask.to(logits.dtype)
    probs = torch.sigmoid(logits) * weight
    dice = (2 * (probs * target).sum() + 1e-5) / (probs.sum() + (target * weight).sum() + 1e-5)
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum") / weight.sum().clamp(min=1)
    return 1 - dice + bce


def _crop(volume: Volume, start: np.ndarray, size: tuple[int, int, int], pad: float = PAD_INPUT):
    """A crop of ``size`` at ``start`` (may overhang; the overhang is padded as air / background):
    (image, labels, mask or None)."""
    image = np.full(size, pad, np.float32)
    labels = np.zeros(size, np.uint8)
    src = tuple(slice(max(s, 0), min(s + n, d)) for s, n, d in zip(start, size, volume.image.shape))
    dst = tuple(slice(r.start - s, r.stop - s) for r, s in zip(src, start))
    image[dst], labels[dst] = volume.image[src], volume.labels[src]
    mask = None
    if volume.mask is not None:
        mask = np.zeros(size, np.uint8)
        mask[dst] = volume.mask[src]
    return image, labels, mask


def _centre_on(voxels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.argwhere(voxels)[rng.integers(int(voxels.sum()))] + rng.integers(-8, 9, 3)


def sample_crop(volume: Volume, size: tuple[int, int, int], stage: str, rng: np.random.Generator,
                pad: float = PAD_INPUT):
    shape = np.asarray(volume.image.shape)
    half = np.asarray(size) // 2
    draw = rng.random()
    if stage == "kidney" and draw < 0.7 and volume.labels.any():
        center = _centre_on(volume.labels > 0, rng)
    elif stage == "tumor" and draw < 0.9 and volume.mask is not None and volume.mask.any():
        center = _centre_on(volume.labels > 0 if draw < 0.45 and volume.labels.any() else volume.mask > 0, rng)
    elif stage == "fine" and draw < 0.9 and volume.labels.any():
        # Half of the foreground-centred crops go to a tumor when there is one: tumors are rare voxels.
        target = 2 if draw < 0.45 and (volume.labels == 2).any() else 1
        foreground = np.argwhere(volume.labels >= target)
        center = foreground[rng.integers(len(foreground))] + rng.integers(-8, 9, 3)
    else:
        center = np.array([rng.integers(0, max(n, 1)) for n in shape])
    return _crop(volume, center - half, size, pad)


def _batch(volumes, config: TrainConfig, rng):
    crops = [sample_crop(volumes[rng.integers(len(volumes))], config.crop, config.stage, rng, config.pad_input)
             for _ in range(config.batch_size)]
    images = torch.from_numpy(np.stack([c[0] for c in crops])[:, None])
    labels = torch.from_numpy(np.stack([c[1] for c in crops]).astype(np.int64))
    masks = None if crops[0][2] is None else torch.from_numpy(np.stack([c[2] for c in crops]))
    if config.augment:
        from kitsrt.training.augment import augment_batch

        return augment_batch(images, labels, masks, rng, low=config.pad_input)
    return images, labels, masks


def compute_loss(logits: torch.Tensor, labels: torch.Tensor, masks, config: TrainConfig) -> torch.Tensor:
    if config.loss == "dice+bce":
        return masked_dice_bce_loss(logits, labels, masks)
    weight = None
    if config.tumor_ce_weight != 1.0 and logits.shape[1] > 2:
        weight = torch.ones(logits.shape[1], dtype=logits.dtype)
        weight[2] = config.tumor_ce_weight
    return generalized_dice_loss(logits, labels) + config.ce_weight * F.cross_entropy(logits, labels, weight=weight)


def save_checkpoint(path: Path, model, optimizer, step: int, config: TrainConfig, rng) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "torch_rng": torch.get_rng_state(), "numpy_rng": json.dumps(rng.bit_generator.state)}
    tmp = path.with_suffix(".partial")
    torch.save(state, tmp)
    tmp.replace(path)
    (path.parent / "config.json").write_text(json.dumps(config.to_dict(), indent=2))


def train(volumes: list[Volume], config: TrainConfig, out_dir: Path, resume: bool = False,
          progress=None, stop_at: int | None = None) -> dict:
    """Train and write ``out_dir/checkpoint.pt`` + ``config.json``. Returns a small summary.
    ``stop_at``: stop (and checkpoint) at this step of the ``config.steps`` schedule; a later run
    with ``resume`` goes on exactly where it stopped."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    model = build_model(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "checkpoint.pt"
    step = 0
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
    model.train()
    started, cpu_started, losses = time.perf_counter(), time.process_time(), []
    last = config.steps if stop_at is None else min(stop_at, config.steps)
    while step < last:
        lr = float(config.learning_rate * 0.5 * (1 + np.cos(np.pi * step / config.steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, labels, masks = _batch(volumes, config, rng)
        logits = model(images)
        loss = compute_loss(logits, labels, masks, config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        losses.append(loss.item())
        if progress is not None:
            progress(step, losses[-1])
        if step % config.checkpoint_every == 0 or step == last:
            save_checkpoint(checkpoint, model, optimizer, step, config, rng)
    return {"steps": step, "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started,
            "final_loss": float(np.mean(losses[-20:])) if losses else None}


def training_plan(preset: str | None, stage: str | None):
    """(pipeline spec, network roles to train) for ``kitsrt train --preset/--stage``."""
    from kitsrt.errors import InputError
    from kitsrt.runtime.pipeline import seed002_preset, seed004_preset

    if preset == "seed004":
        spec = seed004_preset()
        if stage is not None and stage not in spec.networks():
            raise InputError(f"--stage {stage!r}: seed004 trains kidney or tumor")
        return spec, [stage] if stage else list(spec.networks())
    if stage not in ("coarse", "fine"):
        raise InputError(f"--stage {stage!r}: expected coarse or fine (or --preset seed004)")
    if preset is not None and preset not in PRESETS and preset != DEMO_V2:
        raise InputError(f"--preset {preset!r}: expected seed004, {DEMO_V2} or one of {', '.join(PRESETS)}")
    return seed002_preset(), [stage]


DEMO_V2 = "demo-v2"


def preset_config(stage: str, preset: str | None = None, **overrides) -> TrainConfig:
    """The training config of one network: seed 002's VB-Net presets (coarse, fine, tiny),
    ``demo-v2`` (the larger coarse-v2 / fine-v2 VB-Nets with augmentation) or seed 004's V-Net
    (``preset="seed004"``, stage kidney or tumor: Dice + BCE, air pads as 0)."""
    if preset == DEMO_V2:
        return TrainConfig(stage=stage, model=PRESETS[f"{stage}-v2"], **({"augment": True} | overrides))
    if preset == "seed004":
        return TrainConfig(stage=stage, model=VNET_PRESETS["seed004"], loss="dice+bce", pad_input=0.0,
                           **overrides)
    return TrainConfig(stage=stage, model=PRESETS[preset or stage], **overrides)
