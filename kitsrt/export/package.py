"""Write ``pipeline.json`` (version 2, kind cascade) for a folder holding ``coarse.onnx`` and
``fine.onnx`` with their cards, recording each file's SHA-256, divisibility, spacing and HU window
from the cards. Torch-free.

    python -m kitsrt.export.package kitsrt/models/demo
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kitsrt.io import sha256_of, write_text_atomic
from kitsrt.runtime.pipeline import CascadeSpec, NetworkSpec, WindowSymmetric, load_pipeline, seed002_preset


def network_from_card(folder: Path, network: NetworkSpec) -> NetworkSpec:
    """``network`` with the SHA-256 of its file and the preprocessing facts of its card."""
    card = json.loads((folder / network.model).with_suffix(".json").read_text())
    return network.model_copy(update={
        "sha256": sha256_of(folder / network.model),
        "divisibility": card["input"]["divisibility"],
        "normalization": WindowSymmetric(hu_window=tuple(card["hu_window"])),
        "spacing_mm": NetworkSpec.model_validate({**network.model_dump(), "spacing_mm": card["spacing_mm"]}).spacing_mm,
    })


# Package configuration a rebuild of the networks keeps from an existing pipeline.json.
KEPT_KEYS = ("roi", "postprocess", "quality")


def package_spec(folder: Path, coarse: str = "coarse.onnx", fine: str = "fine.onnx") -> CascadeSpec:
    """The seed 002 preset with each network's file facts; an existing ``pipeline.json``'s ROI policy,
    post-processing and quality limits are kept."""
    spec = seed002_preset(coarse, fine)
    updated = {role: network_from_card(folder, net) for role, net in spec.networks().items()}
    kept = {}
    if (folder / "pipeline.json").exists():
        old = load_pipeline(folder / "pipeline.json").model_dump()
        kept = {key: old[key] for key in KEPT_KEYS if key in old}
    return CascadeSpec.model_validate({**spec.model_dump(), **kept, **{k: v.model_dump() for k, v in updated.items()}})


def main(folder: str) -> None:
    path = Path(folder)
    write_text_atomic(package_spec(path).to_json() + "\n", path / "pipeline.json", overwrite=True)
    print(f"wrote {path / 'pipeline.json'}")


if __name__ == "__main__":
    main(sys.argv[1])
