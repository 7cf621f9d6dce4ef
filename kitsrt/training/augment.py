"""Training-time augmentation of a batch of crops (torch), switched on by ``TrainConfig.augment``.

Geometric (same transform for image, labels and mask): a left-right flip (the patient's x axis, the
last array axis of the runtime's canonical grid; kidneys are mirror images of each other, so this is
anatomically safe; no superior-inferior or anterior-posterior flips), and a small rotation in the
axial plane (up to 15 degrees) with an isotropic scale of 0.85-1.15. Intensity (image only, in HU
through the network's window): scale 0.9-1.1 and shift of up to 25 HU, a gamma of 0.7-1.5 on the
window, Gaussian noise of up to 25 HU, a Gaussian blur of 0.5-1.0 voxel. Values are clipped back to
the window afterwards, as the runtime's normalisation would. Draws come from the trainer's numpy
generator, so a run stays deterministic for a seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

P_FLIP, P_AFFINE, P_GAMMA, P_NOISE, P_BLUR = 0.5, 0.4, 0.3, 0.5, 0.2
MAX_ROTATION_DEG, SCALE_RANGE = 15.0, (0.85, 1.15)


def _affine(image: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None, angle_rad: float,
            scale: float, low: float):
    """Rotate the (z, y, x) volumes by ``angle_rad`` about z and scale them; image (1, D, H, W) with
    trilinear sampling (outside: ``low``, i.e. air), labels and mask (D, H, W) nearest."""
    cos, sin = math.cos(angle_rad) / scale, math.sin(angle_rad) / scale
    theta = torch.tensor([[[cos, -sin, 0.0, 0.0], [sin, cos, 0.0, 0.0], [0.0, 0.0, 1.0 / scale, 0.0]]],
                         dtype=torch.float32)
    grid = F.affine_grid(theta, [1, 1, *image.shape[-3:]], align_corners=False)
    moved = F.grid_sample(image[None] - low, grid, mode="bilinear", align_corners=False)[0] + low
    warp = lambda v: F.grid_sample(v[None, None].float(), grid, mode="nearest", align_corners=False)[0, 0].to(v.dtype)
    return moved, warp(labels), None if mask is None else warp(mask)


def _blur(image: torch.Tensor, sigma_voxels: float) -> torch.Tensor:
    """Separable Gaussian blur of a (1, D, H, W) volume, edges replicated."""
    radius = max(int(math.ceil(2.5 * sigma_voxels)), 1)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / sigma_voxels) ** 2)
    kernel /= kernel.sum()
    out = image[None]
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        pad = [0] * 6
        pad[2 * (2 - axis)], pad[2 * (2 - axis) + 1] = radius, radius
        out = F.conv3d(F.pad(out, pad, mode="replicate"), kernel.reshape(shape))
    return out[0]


def _intensity(image: torch.Tensor, rng: np.random.Generator, low: float, window_hu: tuple[float, float]):
    """HU scale/shift, gamma, noise and blur of a (1, D, H, W) image whose window maps to [low, 1]."""
    span_hu = window_hu[1] - window_hu[0]
    hu = window_hu[0] + (image - low) / (1.0 - low) * span_hu
    hu = hu * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(-25, 25))
    if rng.random() < P_NOISE:
        hu = hu + float(rng.uniform(0, 25)) * torch.from_numpy(rng.standard_normal(hu.shape, dtype=np.float32))
    unit = ((hu - window_hu[0]) / span_hu).clamp(0.0, 1.0)
    if rng.random() < P_GAMMA:
        unit = unit ** float(rng.uniform(0.7, 1.5))
    if rng.random() < P_BLUR:
        unit = _blur(unit, float(rng.uniform(0.5, 1.0)))
    return low + unit * (1.0 - low)


def augment_batch(images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None,
                  rng: np.random.Generator, low: float = -1.0,
                  window_hu: tuple[float, float] = (-200.0, 500.0)):
    """Augment each crop of a batch: images (N, 1, D, H, W) normalised so that the HU window maps to
    [low, 1]; labels (N, D, H, W) integer; masks (N, D, H, W) or None. Returns new tensors."""
    out_images, out_labels, out_masks = [], [], []
    for n in range(images.shape[0]):
        image, label, mask = images[n], labels[n], None if masks is None else masks[n]
        if rng.random() < P_FLIP:
            image, label = image.flip(-1), label.flip(-1)
            mask = None if mask is None else mask.flip(-1)
        if rng.random() < P_AFFINE:
            angle = math.radians(float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)))
            image, label, mask = _affine(image, label, mask, angle, float(rng.uniform(*SCALE_RANGE)), low)
        out_images.append(_intensity(image, rng, low, window_hu))
        out_labels.append(label)
        out_masks.append(mask)
    return (torch.stack(out_images), torch.stack(out_labels),
            None if masks is None else torch.stack(out_masks))
