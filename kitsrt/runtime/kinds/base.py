"""What every pipeline kind is: a spec type, one ``run`` function returning a ``KindResult``, and
what the tooling (calibration, quantization, the precision gate, engine builds, the benchmark) needs
to treat each of its networks by role: ``roles(spec)`` and ``network_inputs(scan, spec, backends)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class KindResult:
    """One scan's outcome: ``labels`` (k, j, i) uint8 on the scan's exact grid (0 background,
    1 kidney, 2 tumor), ``regions`` (one dict per VOI / kidney for the report: side, volumes in mL,
    tumor count, box in mm) and ``extra`` (kind-specific facts, e.g. the VOI boxes)."""

    labels: np.ndarray
    regions: list[dict]
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ShapeRange:
    """The input shapes (N, C, z, y, x) a network is fed at run time: smallest, typical, largest
    (a TensorRT optimisation profile)."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @classmethod
    def spatial(cls, min_zyx, max_zyx, batch: int = 1, channels: int = 1) -> ShapeRange:
        """Batch ``batch`` of ``channels`` over a spatial (z, y, x) range; opt is the middle."""
        opt = tuple((a + b) // 2 for a, b in zip(min_zyx, max_zyx))
        return cls((batch, channels, *min_zyx), (batch, channels, *opt), (batch, channels, *max_zyx))


def argmax_labels(outputs: np.ndarray) -> np.ndarray:
    """(C, z, y, x) logits -> (z, y, x) uint8 argmax."""
    return outputs.argmax(axis=0).astype(np.uint8)


@dataclass(frozen=True)
class Role:
    """One network of a kind, as the tooling sees it.

    ``network``: its spec (``model``, ``sha256``, ``input_name``, ``output_name``);
    ``shapes``: the input shapes it is fed; ``pad_value``: the network-input value of padding
    (normalised air, or nnU-Net's 0); ``calibration_patch``: the (z, y, x) shape INT8 calibration
    tiles its inputs into; ``decide``: (C, z, y, x) outputs -> (z, y, x) uint8 labels, as the kind
    reads them (argmax, sigmoid > 0.5, nnU-Net regions); ``classes``: the foreground values of
    ``decide``.
    """

    name: str
    network: object
    shapes: ShapeRange
    pad_value: float
    calibration_patch: tuple[int, int, int]
    decide: Callable[[np.ndarray], np.ndarray] = argmax_labels
    classes: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Kind:
    """A pipeline kind: its spec model, ``run(scan, spec, backends, timings) -> KindResult`` (where
    ``backends`` maps each role of ``spec.networks()`` to a loaded backend), ``roles(spec) ->
    dict[role, Role]`` and ``network_inputs(scan, spec, backends, tiles_per_case) -> dict[role,
    list[(z, y, x) float32]]``: the inputs ``run`` feeds each network for this scan, built by the same
    functions (``tiles_per_case`` bounds a tiled kind's sample)."""

    spec_type: type
    run: Callable
    roles: Callable
    network_inputs: Callable


CALIBRATION_SIDE = 64  # voxels per axis of an INT8 calibration patch (histograms need equal shapes)


def calibration_patch(min_shape, max_shape, divisibility: int) -> tuple[int, int, int]:
    """(z, y, x) patch for INT8 calibration: 64 per axis; an axis of fixed size (min == max) is split
    into equal parts of at most 64 voxels that keep ``divisibility`` (168 -> 3 x 56), so no patch
    holds padding the network never sees."""
    sides = []
    for low, high in zip(min_shape, max_shape):
        side = CALIBRATION_SIDE
        parts = -(-high // CALIBRATION_SIDE)
        if low == high and high % parts == 0 and (high // parts) % divisibility == 0:
            side = high // parts
        sides.append(side)
    return tuple(sides)


def network_role(name: str, network, labels: dict[str, str], air: float,
                 decide: Callable[[np.ndarray], np.ndarray] = argmax_labels,
                 classes: tuple[int, ...] | None = None) -> Role:
    """The ``Role`` of a ``NetworkSpec`` network (cascade, nested): batch 1 of one channel over its
    ``min_shape``..``max_shape``; ``air`` is the normalised value of air (its padding)."""
    foreground = tuple(sorted(int(k) for k in labels if int(k) != 0))
    return Role(name, network, ShapeRange.spatial(network.min_shape, network.max_shape), air,
                calibration_patch(network.min_shape, network.max_shape, network.divisibility), decide,
                classes if classes is not None else foreground)
