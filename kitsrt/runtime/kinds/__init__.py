"""Pipeline kinds: one short orchestration function each, composed from the shared primitives in
``kitsrt.runtime`` (preprocess, inference, postprocess, restore). ``KINDS`` maps the ``kind`` of a
``pipeline.json`` to its ``Kind``; ``Segmenter`` dispatches on it and never knows the topology."""

from __future__ import annotations

from kitsrt.runtime.kinds import cascade, nested, sliding_window
from kitsrt.runtime.kinds.base import Kind, KindResult, Role, ShapeRange
from kitsrt.runtime.pipeline import CascadeSpec, NestedSpec
from kitsrt.runtime.sliding_window_spec import SlidingWindowSpec

KINDS: dict[str, Kind] = {
    "cascade": Kind(CascadeSpec, cascade.run, cascade.roles, cascade.network_inputs),
    "nested": Kind(NestedSpec, nested.run, nested.roles, nested.network_inputs),
    "sliding-window": Kind(SlidingWindowSpec, sliding_window.run, sliding_window.roles, sliding_window.network_inputs),
}


def kind_of(spec) -> Kind:
    """The registered kind of a validated spec."""
    return KINDS[spec.kind]


def roles_of(spec) -> dict[str, Role]:
    """Role -> ``Role`` of every network of a validated spec, in the order they run."""
    return kind_of(spec).roles(spec)


__all__ = ["KINDS", "Kind", "KindResult", "Role", "ShapeRange", "kind_of", "roles_of"]
