"""The seed 002 reference trainer: random crops, generalized Dice + cross-entropy, Adam.

Coarse crops are drawn anywhere in the 6 mm volume; 90% of fine crops are centred on a random
kidney or tumor voxel of a 1 mm VOI (the paper's "only in the area indicated by the ground-truth
mask"), half of those on a tumor voxel when the VOI has one.
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

from kitsrt.models.vbnet import PRESETS, VBNetConfig, build_model
from kitsrt.training.data import Volume

PAD_INPUT = -1.0  # scaled value of HU at or below the window's low end


@dataclass(frozen=True)
class TrainConfig:
    stage: str  # "coarse" or "fine"
    model: VBNetConfig
    steps: int = 300
    batch_size: int = 2
    crop: tuple[int, int, int] = (64, 64, 64)
    learning_rate: float = 2e-3
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 50
    ce_weight: float = 1.0

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


def _crop(volume: Volume, start: np.ndarray, size: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A crop of ``size`` at ``start`` (may overhang; the overhang is padded as air / background)."""
    image = np.full(size, PAD_INPUT, np.float32)
    labels = np.zeros(size, np.uint8)
    src = tuple(slice(max(s, 0), min(s + n, d)) for s, n, d in zip(start, size, volume.image.shape))
    dst = tuple(slice(r.start - s, r.stop - s) for r, s in zip(src, start))
    image[dst], labels[dst] = volume.image[src], volume.labels[src]
    return image, labels


def sample_crop(volume: Volume, size: tuple[int, int, int], stage: str, rng: np.random.Generator):
    shape = np.asarray(volume.image.shape)
    half = np.asarray(size) // 2
    draw = rng.random()
    if stage == "fine" and draw < 0.9 and volume.labels.any():
        # Half of the foreground-centred crops go to a tumor when there is one: tumors are rare voxels.
        target = 2 if draw < 0.45 and (volume.labels == 2).any() else 1
        foreground = np.argwhere(volume.labels >= target)
        center = foreground[rng.integers(len(foreground))] + rng.integers(-8, 9, 3)
    else:
        center = np.array([rng.integers(0, max(n, 1)) for n in shape])
    return _crop(volume, center - half, size)


def _batch(volumes, config: TrainConfig, rng):
    crops = [sample_crop(volumes[rng.integers(len(volumes))], config.crop, config.stage, rng)
             for _ in range(config.batch_size)]
    images = torch.from_numpy(np.stack([c[0] for c in crops])[:, None])
    labels = torch.from_numpy(np.stack([c[1] for c in crops]).astype(np.int64))
    return images, labels


def save_checkpoint(path: Path, model, optimizer, step: int, config: TrainConfig, rng) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "torch_rng": torch.get_rng_state(), "numpy_rng": json.dumps(rng.bit_generator.state)}
    tmp = path.with_suffix(".partial")
    torch.save(state, tmp)
    tmp.replace(path)
    (path.parent / "config.json").write_text(json.dumps(config.to_dict(), indent=2))


def train(volumes: list[Volume], config: TrainConfig, out_dir: Path, resume: bool = False,
          progress=None) -> dict:
    """Train and write ``out_dir/checkpoint.pt`` + ``config.json``. Returns a small summary."""
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
    started, losses = time.perf_counter(), []
    while step < config.steps:
        lr = float(config.learning_rate * 0.5 * (1 + np.cos(np.pi * step / config.steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, labels = _batch(volumes, config, rng)
        logits = model(images)
        loss = generalized_dice_loss(logits, labels) + config.ce_weight * F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        losses.append(loss.item())
        if progress is not None:
            progress(step, losses[-1])
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint(checkpoint, model, optimizer, step, config, rng)
    return {"steps": step, "seconds": time.perf_counter() - started,
            "final_loss": float(np.mean(losses[-20:])) if losses else None}


def preset_config(stage: str, preset: str | None = None, **overrides) -> TrainConfig:
    return TrainConfig(stage=stage, model=PRESETS[preset or stage], **overrides)
