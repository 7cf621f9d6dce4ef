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
from kitsrt.runtime.pipeline import CascadeSpec, NestedSpec, NetworkSpec, load_pipeline
from kitsrt.runtime.sliding_window_spec import SlidingWindowSpec


def demo_package_path() -> Path:
    """The bundled demo package (trained on synthetic phantoms; not a clinical model)."""
    return Path(str(resources.files("kitsrt.models") / "demo"))


@dataclass(frozen=True)
class ModelPackage:
    """A checked package folder and its validated pipeline spec."""

    folder: Path
    spec: CascadeSpec | NestedSpec | SlidingWindowSpec

    def model_path(self, network: NetworkSpec) -> Path:
        return self.folder / network.model

    def card(self, network: NetworkSpec) -> dict:
        return json.loads(self.model_path(network).with_suffix(".json").read_text())

    def network(self, role: str) -> NetworkSpec:
        """The network of ``role`` (e.g. coarse, fine; kidney, tumor)."""
        networks = self.spec.networks()
        if role not in networks:
            raise ModelPackageError(f"{self.folder / 'pipeline.json'}: a {self.spec.kind} pipeline has no "
                                    f"{role!r} network; it has {', '.join(networks)}")
        return networks[role]

    @property
    def hashes(self) -> dict[str, str]:
        return {net.model: net.sha256 for net in self.spec.networks().values()}


def load_package(folder: Path | None = None, verify: bool = True) -> ModelPackage:
    """Read and check a package folder (default: the bundled demo)."""
    folder = Path(folder) if folder is not None else demo_package_path()
    if not folder.is_dir():
        raise ModelPackageError(f"{folder}: model package folder not found")
    where = folder / "pipeline.json"
    spec = load_pipeline(where)
    from kitsrt.runtime.kinds import KINDS

    if spec.kind not in KINDS:
        raise ModelPackageError(f"{where}: kind: {spec.kind!r} is valid but not runnable by this kitsrt; "
                                f"expected one of {', '.join(KINDS)}")
    for role, network in spec.networks().items():
        path = folder / network.model
        if not path.exists():
            raise ModelPackageError(f"{where}: {role}.model: file {network.model!r} is missing from {folder}; "
                                    "expected the ONNX file the pipeline names")
        if not path.with_suffix(".json").exists():
            raise ModelPackageError(f"{path.with_suffix('.json')}: model card is missing")
        if verify and network.sha256 and sha256_of(path) != network.sha256:
            raise ModelPackageError(f"{path}: SHA-256 does not match pipeline.json; the file was changed "
                                    "or damaged, re-export or re-install the package")
    return ModelPackage(folder, spec)
