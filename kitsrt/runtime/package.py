"""Model packages: a folder with ``pipeline.json``, the ONNX files it names and their model cards.

Loading checks that every file is present and that each ONNX file's SHA-256 matches the one the
pipeline records, so a swapped or damaged model never runs silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kitsrt.errors import ModelPackageError
from kitsrt.io import sha256_of
from kitsrt.runtime.pipeline import PipelineSpec, StageSpec


def demo_package_path() -> Path:
    """The bundled demo package (trained on synthetic phantoms; not a clinical model)."""
    return Path(str(resources.files("kitsrt.models") / "demo"))


@dataclass(frozen=True)
class ModelPackage:
    folder: Path
    spec: PipelineSpec

    def model_path(self, stage: StageSpec) -> Path:
        return self.folder / stage.model

    def card(self, stage: StageSpec) -> dict:
        return json.loads(self.model_path(stage).with_suffix(".json").read_text())

    @property
    def hashes(self) -> dict[str, str]:
        return {self.spec.coarse.model: self.spec.coarse.sha256, self.spec.fine.model: self.spec.fine.sha256}


def load_package(folder: Path | None = None, verify: bool = True) -> ModelPackage:
    """Read and check a package folder (default: the bundled demo)."""
    folder = Path(folder) if folder is not None else demo_package_path()
    if not folder.is_dir():
        raise ModelPackageError(f"{folder}: model package folder not found")
    spec = PipelineSpec.load(folder / "pipeline.json")
    for stage in (spec.coarse, spec.fine):
        path = folder / stage.model
        if not path.exists():
            raise ModelPackageError(f"{path}: model file named in pipeline.json is missing")
        if not path.with_suffix(".json").exists():
            raise ModelPackageError(f"{path.with_suffix('.json')}: model card is missing")
        if verify and stage.sha256 and sha256_of(path) != stage.sha256:
            raise ModelPackageError(f"{path}: SHA-256 does not match pipeline.json; the file was changed "
                                    "or damaged, re-export or re-install the package")
    return ModelPackage(folder, spec)
