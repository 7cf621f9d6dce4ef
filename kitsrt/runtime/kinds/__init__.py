"""Pipeline kinds: one short orchestration function each, composed from the shared primitives in
``kitsrt.runtime`` (preprocess, inference, postprocess, restore). ``KINDS`` maps the ``kind`` of a
``pipeline.json`` to its ``Kind``; ``Segmenter`` dispatches on it and never knows the topology."""

from __future__ import annotations

from kitsrt.runtime.kinds import cascade, nested, sliding_window
from kitsrt.runtime.kinds.base import Kind, KindResult
from kitsrt.runtime.pipeline import CascadeSpec, NestedSpec
from kitsrt.runtime.sliding_window_spec import SlidingWindowSpec

KINDS: dict[str, Kind] = {
    "cascade": Kind(CascadeSpec, cascade.run),
    "nested": Kind(NestedSpec, nested.run),
    "sliding-window": Kind(SlidingWindowSpec, sliding_window.run),
}


def kind_of(spec) -> Kind:
    """The registered kind of a validated spec."""
    return KINDS[spec.kind]


__all__ = ["KINDS", "Kind", "KindResult", "kind_of"]
