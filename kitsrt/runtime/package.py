"""Model packages: a folder with ``pipeline.json``, the ONNX files it names and their model cards.

Loading checks that every file the pipeline names is a regular file inside the package folder (after
resolving links), that each network records the SHA-256 of its file (required) and that the file
matches it, so a swapped, damaged or borrowed model never runs silently.
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


def read_card(path: Path) -> dict:
    """A model card (or gate card): a JSON object, else ModelPackageError (exit 4) naming the file."""
    try:
        card = json.loads(Path(path).read_text())
    except (ValueError, OSError) as exc:
        raise ModelPackageError(f"{path}: model card is not readable JSON ({exc})") from None
    if not isinstance(card, dict):
        raise ModelPackageError(f"{path}: model card is not a JSON object")
    return card


BUNDLED_PACKAGES = ("demo", "seed004_demo")


def bundled_package_path(name: str) -> Path:
    """A package shipped inside kitsrt (``kitsrt/packages/<name>``)."""
    if name not in BUNDLED_PACKAGES:
        raise ModelPackageError(f"no bundled package named {name!r}; bundled: {', '.join(BUNDLED_PACKAGES)}")
    return Path(str(resources.files("kitsrt.packages") / name))


def demo_package_path() -> Path:
    """The bundled demo package (seed 002 cascade trained on synthetic phantoms; not a clinical model)."""
    return bundled_package_path("demo")


@dataclass(frozen=True)
class ModelPackage:
    """A checked package folder and its validated pipeline spec."""

    folder: Path
    spec: CascadeSpec | NestedSpec | SlidingWindowSpec

    def model_path(self, network: NetworkSpec) -> Path:
        return self.folder / network.model

    def card(self, network: NetworkSpec) -> dict:
        return read_card(self.model_path(network).with_suffix(".json"))

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


def confined_file(folder: Path, name: str, what: str) -> Path:
    """``folder / name`` resolved (links followed), refused unless it is a regular file inside
    ``folder``: a package must not make kitsrt load a model from elsewhere (``../``, an absolute path,
    a link) or open a FIFO or device."""
    root = folder.resolve()
    path = (root / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(root) or path == root:
        raise ModelPackageError(f"{what}: {name!r} lies outside the package folder {folder}; every file a "
                                "package names must be a relative path inside it")
    if path.exists() and not path.is_file():
        raise ModelPackageError(f"{what}: {name!r} is not a regular file")
    return path


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
        path = confined_file(folder, network.model, f"{where}: {role}.model")
        if not path.exists():
            raise ModelPackageError(f"{where}: {role}.model: file {network.model!r} is missing from {folder}; "
                                    "expected the ONNX file the pipeline names")
        confined_file(folder, path.with_suffix(".json").name, f"{where}: {role} model card")
        if not path.with_suffix(".json").exists():
            raise ModelPackageError(f"{path.with_suffix('.json')}: model card is missing")
        if not network.sha256:
            raise ModelPackageError(f"{where}: {role}.sha256 is empty; every network needs the SHA-256 of its "
                                    "file (python -m kitsrt.export.package writes it)")
        if verify and sha256_of(path) != network.sha256:
            raise ModelPackageError(f"{path}: SHA-256 does not match pipeline.json; the file was changed "
                                    "or damaged, re-export or re-install the package")
    return ModelPackage(folder, spec)
