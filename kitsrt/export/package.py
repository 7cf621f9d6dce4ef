"""Write ``pipeline.json`` for a folder holding ``coarse.onnx`` and ``fine.onnx`` with their cards,
recording each file's SHA-256 and divisibility from the cards. Torch-free.

    python -m kitsrt.export.package kitsrt/models/demo
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from kitsrt.io import sha256_of, write_text_atomic
from kitsrt.runtime.pipeline import PipelineSpec, seed002_preset


def package_spec(folder: Path, coarse: str = "coarse.onnx", fine: str = "fine.onnx") -> PipelineSpec:
    spec = seed002_preset(coarse, fine)
    stages = {}
    for name, stage in (("coarse", spec.coarse), ("fine", spec.fine)):
        card = json.loads((folder / stage.model).with_suffix(".json").read_text())
        stages[name] = replace(stage, sha256=sha256_of(folder / stage.model),
                               divisibility=card["input"]["divisibility"], hu_window=tuple(card["hu_window"]),
                               spacing_mm=card["spacing_mm"])
    return replace(spec, **stages)


def main(folder: str) -> None:
    path = Path(folder)
    write_text_atomic(package_spec(path).to_json() + "\n", path / "pipeline.json", overwrite=True)
    print(f"wrote {path / 'pipeline.json'}")


if __name__ == "__main__":
    main(sys.argv[1])
