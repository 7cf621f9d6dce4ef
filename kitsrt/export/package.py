"""Write ``pipeline.json`` (version 2) for a folder of exported networks with their cards, recording
each file's SHA-256, divisibility, spacing and normalisation from the cards. Torch-free.

    python -m kitsrt.export.package kitsrt/packages/demo                   # cascade: coarse.onnx, fine.onnx
    python -m kitsrt.export.package kitsrt/packages/seed004_demo --kind nested   # kidney.onnx, tumor.onnx
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kitsrt.io import sha256_of, write_text_atomic
from kitsrt.runtime.pipeline import (
    CascadeSpec,
    NestedSpec,
    NetworkSpec,
    WindowSymmetric,
    load_pipeline,
    parse_pipeline,
    seed002_preset,
    seed004_preset,
)


def network_from_card(folder: Path, network: NetworkSpec) -> NetworkSpec:
    """``network`` with the SHA-256 of its file and the preprocessing facts of its card."""
    card = json.loads((folder / network.model).with_suffix(".json").read_text())
    normalization = card.get("normalization") or WindowSymmetric(hu_window=tuple(card["hu_window"])).model_dump()
    return NetworkSpec.model_validate({**network.model_dump(), "sha256": sha256_of(folder / network.model),
                                       "divisibility": card["input"]["divisibility"],
                                       "normalization": normalization, "spacing_mm": card["spacing_mm"]})


# Package configuration a rebuild of the networks keeps from an existing pipeline.json of the same kind.
KEPT_KEYS = ("roi", "postprocess", "quality")


def package_spec(folder: Path, kind: str = "cascade") -> CascadeSpec | NestedSpec:
    """The preset of ``kind`` with every network's facts taken from its card in ``folder``; an existing
    ``pipeline.json``'s ROI policy, post-processing and quality limits are kept."""
    spec = seed004_preset() if kind == "nested" else seed002_preset()
    updated = {role: network_from_card(folder, net).model_dump() for role, net in spec.networks().items()}
    kept = {}
    if (folder / "pipeline.json").exists():
        old = load_pipeline(folder / "pipeline.json")
        if old.kind == spec.kind:
            dumped = old.model_dump(mode="json")
            kept = {key: dumped[key] for key in KEPT_KEYS if key in dumped}
    return parse_pipeline({**spec.model_dump(mode="json"), **kept, **updated}, str(folder / "pipeline.json"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write pipeline.json for a folder of exported networks.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--kind", choices=("cascade", "nested"), default="cascade")
    args = parser.parse_args(argv)
    write_text_atomic(package_spec(args.folder, args.kind).to_json() + "\n", args.folder / "pipeline.json",
                      overwrite=True)
    print(f"wrote {args.folder / 'pipeline.json'}")


if __name__ == "__main__":
    main()
