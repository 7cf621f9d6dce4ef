"""Mixed-precision INT8 by per-layer sensitivity: which quantizable nodes must stay in float.

Small segmentation networks can be fragile in INT8 as a whole while most of their layers are
harmless one by one. So each candidate node is quantized alone and the stage's label maps on probe
inputs are compared with FP32's; then nodes are kept in float, most sensitive first, until the
quantized rest agrees with FP32 at least ``target``. Probe inputs come from the calibration split,
never from the held-out split that the accuracy gate judges on. The result is still one ONNX file:
a node without Q/DQ simply runs in float (in onnxruntime and in a strongly typed TensorRT network).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


def label_agreement(reference: Sequence[np.ndarray], labels: Sequence[np.ndarray], classes: Sequence[int]) -> float:
    """Worst Dice over the foreground ``classes`` between two lists of label maps, pooled over all
    maps; a class absent from both counts as full agreement."""
    worst = 1.0
    for label in classes:
        overlap = total = 0
        for a, b in zip(reference, labels, strict=True):
            x, y = a == label, b == label
            overlap += int(np.count_nonzero(x & y))
            total += int(np.count_nonzero(x)) + int(np.count_nonzero(y))
        if total:
            worst = min(worst, 2 * overlap / total)
    return worst


@dataclass(frozen=True)
class FloatSearch:
    target: float
    agreement_all_quantized: float
    agreement: float  # with ``float_nodes`` kept in float
    float_nodes: list[str]
    ranking: list[tuple[str, float]]  # (node, agreement when only it is quantized), most sensitive first

    def to_dict(self) -> dict:
        return asdict(self)


def search_float_nodes(candidates: Sequence[str], agreement_of: Callable[[list[str]], float],
                       target: float) -> FloatSearch:
    """Fewest most-sensitive nodes to keep in float so that ``agreement_of(quantized nodes) >= target``.

    ``agreement_of`` quantizes exactly the given nodes and measures agreement with FP32. The count
    is found by bisection, assuming that keeping more nodes in float never hurts.
    """
    candidates = list(candidates)
    everything = agreement_of(candidates)
    if everything >= target:
        return FloatSearch(target, everything, everything, [], [])
    ranking = sorted(((node, agreement_of([node])) for node in candidates), key=lambda item: item[1])
    order = [node for node, _ in ranking]
    low, high = 0, len(order)  # agreement with order[:low] in float is < target; with order[:high] it is met
    measured = {high: 1.0}
    while high - low > 1:
        middle = (low + high) // 2
        measured[middle] = agreement_of(order[middle:])
        low, high = (low, middle) if measured[middle] >= target else (middle, high)
    return FloatSearch(target, everything, measured[high], order[:high], ranking)
