"""The embeddable API: ``Segmenter.load(package, backend=...).segment(scan_or_path) -> Result``.

A Segmenter holds one loaded backend per network role of its pipeline (``spec.networks()``) and
nothing else that changes, so one instance can serve several threads at once (backends' ``infer`` is
thread-safe). It dispatches on the pipeline's kind and never knows the topology. It never imports
torch unless the torch backend is asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kitsrt.engines import RUNTIME_PRECISIONS, check_runtime_precision, create_backend
from kitsrt.engines.auto import load_auto
from kitsrt.errors import InputError, ResourceLimitError
from kitsrt.io import Geometry, Scan, check_image, read_ct, write_label_map
from kitsrt.engines.base import Backend
from kitsrt.runtime.kinds import kind_of
from kitsrt.runtime.memory import return_free_heap
from kitsrt.runtime.package import ModelPackage, load_package, read_card
from kitsrt.runtime.quality import header_warnings, package_warnings, scan_warnings, side_warnings
from kitsrt.runtime.report import build_report
from kitsrt.runtime.timing import Timings

CT_MIN_HU, CT_MAX_HU, AIR_BELOW_HU = -4000.0, 5000.0, -500.0


@dataclass(frozen=True)
class Result:
    """A label map (uint8, axes (k, j, i); 0 background, 1 kidney, 2 tumor) on the input's exact
    grid, and the report."""

    labels: np.ndarray
    geometry: Geometry
    report: dict
    vois: tuple = ()  # the physical boxes (kitsrt.runtime.preprocess.Box) the fine stage ran on

    @property
    def kidney_found(self) -> bool:
        return self.report["kidney_found"]

    def write(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        return write_label_map(self.labels, self.geometry, path, overwrite)


def variant_path(package: ModelPackage, role: str, precision: str) -> Path:
    """``<model>.<precision>.onnx`` of a package's ``role`` network, checked against the SHA-256 in
    its own card."""
    import json

    from kitsrt.errors import ModelPackageError
    from kitsrt.io import sha256_of

    from kitsrt.runtime.package import confined_file

    base = package.model_path(package.network(role))
    path = confined_file(package.folder, str(base.relative_to(package.folder).with_name(
        f"{base.stem}.{precision}.onnx")), f"{role} {precision} variant")
    card = confined_file(package.folder, str(path.relative_to(package.folder.resolve()).with_suffix(".json")),
                         f"{role} {precision} card")
    if not path.exists() or not card.exists():
        raise ModelPackageError(f"{path}: no {precision} variant in the package; build it with "
                                f"`kitsrt quantize --precision {precision}`")
    try:
        recorded = json.loads(card.read_text()).get("onnx_sha256")
    except (ValueError, AttributeError, OSError):
        raise ModelPackageError(f"{card}: model card is not a readable JSON object; rebuild the variant") from None
    if not recorded or sha256_of(path) != recorded:
        raise ModelPackageError(f"{path}: SHA-256 does not match its card {card.name}; rebuild the variant")
    return path


def runtime_precision_file(package: ModelPackage, role: str, precision: str) -> Path:
    """The FP32 file of a package's ``role`` network for a runtime precision (bf16): allowed only when
    ``<model>.<precision>.json`` records its accuracy gate for exactly this file."""
    from kitsrt.errors import ModelPackageError
    from kitsrt.io import sha256_of

    base = package.model_path(package.network(role))
    card = base.with_name(f"{base.stem}.{precision}.json")
    if not card.exists():
        raise ModelPackageError(f"{card}: no {precision} gate result in the package; run "
                                f"`kitsrt quantize --precision {precision} --calibration calib/` first")
    recorded = read_card(card)
    if recorded.get("onnx_sha256") != sha256_of(base) or "gate" not in recorded:
        raise ModelPackageError(f"{card}: its gate was run on another {base.name}; run "
                                f"`kitsrt quantize --precision {precision}` again")
    return base


def check_looks_like_ct(scan: Scan) -> None:
    """Refuse scans whose values are not CT Hounsfield units (MR, PET, raw stored values)."""
    where = scan.source or "scan"
    sample = scan.array[::4, ::4, ::4]
    low, high = float(sample.min()), float(sample.max())
    if low < CT_MIN_HU or high > CT_MAX_HU:
        raise InputError(f"{where}: values from {low:g} to {high:g} are outside the CT range "
                         f"[{CT_MIN_HU:g}, {CT_MAX_HU:g}] HU; kitsrt needs CT in Hounsfield units")
    if low > AIR_BELOW_HU:
        raise InputError(f"{where}: lowest value is {low:g}, no air below {AIR_BELOW_HU:g} HU; this does not "
                         "look like CT in Hounsfield units (raw stored values without the rescale "
                         "intercept, or another modality?)")


def models_run(backends: dict[str, Backend], backend_name: str) -> list[dict]:
    """Per role: the file each backend loaded, its SHA-256 and its precision (from the card beside it)."""
    from kitsrt.io import sha256_of

    models = []
    for role, backend in backends.items():
        path = Path(backend.loaded_file())
        card = Path(backend.model_path).with_suffix(".json")
        runtime = getattr(backend, "precision", "fp32")  # a runtime precision (bf16) of an FP32 file
        card_precision = read_card(card).get("precision", "fp32") if card.exists() else "unknown"
        precision = runtime if runtime != "fp32" else card_precision
        models.append({"role": role, "file": path.name, "sha256": sha256_of(path), "precision": precision,
                       "backend": backend_name})
    return models


def card_facts(package: ModelPackage) -> tuple[dict, str]:
    """What the package's model cards say about the training data (``training_data``, merged over
    the networks) and their disclaimer (the first one given)."""
    training, disclaimer = {}, ""
    for network in package.spec.networks().values():
        card = package.card(network)
        training.update(card.get("training_data", {}))
        disclaimer = disclaimer or card.get("disclaimer", "")
    return training, disclaimer


def quality_warnings(regions: list[dict], labels: np.ndarray, scan: Scan, package: ModelPackage,
                     training: dict, disclaimer: str) -> list[dict]:
    """Every warning of one result, with the package's thresholds (``kitsrt.runtime.quality``)."""
    quality = getattr(package.spec, "quality", None)  # kinds without the field: no limits
    found = package_warnings(quality, disclaimer)
    if quality is not None:
        for region in regions:
            found += side_warnings(region, quality)
        found += scan_warnings(regions, labels, scan.geometry, quality, training)
    return found + header_warnings(scan.dicom, training)


class Segmenter:
    """A loaded package: ``backends`` maps each network role of the pipeline to a loaded backend."""

    def __init__(self, package: ModelPackage, backends: dict[str, Backend], backend_name: str,
                 backend_choice: list[dict] | None = None, release_memory: bool = True):
        self.package = package
        self.backends = backends
        self.backend_name = backend_name
        self.backend_choice = backend_choice  # ``--backend auto``: every candidate tried and why
        self.release_memory = release_memory  # backends give scratch memory back after each scan
        self.models = models_run(backends, backend_name)  # hashed once, from the files actually loaded
        self.training, self.disclaimer = card_facts(package)

    @classmethod
    def load(cls, package: str | os.PathLike | None = None, backend: str = "onnxruntime",
             threads: int = 0, precision: str = "fp32", model_files: dict[str, Path] | None = None) -> Segmenter:
        """Load a model package (default: the bundled demo) on a backend, once.

        ``precision`` picks the package's ``<model>.<precision>.onnx`` variants (fp16, int8);
        ``model_files`` overrides the file of individual roles (used by the precision gate).
        """
        pkg = load_package(Path(package) if package is not None else None)
        roles = pkg.spec.networks()
        files = {role: pkg.model_path(network) for role, network in roles.items()}
        runtime = precision if precision in RUNTIME_PRECISIONS else "fp32"
        check_runtime_precision(backend, runtime)
        pick = runtime_precision_file if runtime != "fp32" else variant_path
        if precision != "fp32":
            files = {role: path if role in (model_files or {}) else pick(pkg, role, precision)
                     for role, path in files.items()}
        files.update(model_files or {})
        choice = None
        if backend == "auto":
            chosen, backends, choice = load_auto(files, threads, runtime)
        else:
            backends = {}
            try:
                for role in roles:
                    backends[role] = create_backend(backend, str(files[role]), threads, runtime).load()
            except Exception:
                for loaded in backends.values():
                    loaded.close()
                raise
        first = next(iter(backends.values()))
        name = first.describe() + ("" if precision == "fp32" or runtime != "fp32" else f", {precision}")
        try:
            return cls(pkg, backends, name, choice)
        except BaseException:
            for loaded in backends.values():
                loaded.close()
            raise

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def segment(self, scan: Scan | str | os.PathLike, time_limit_s: float | None = None) -> Result:
        """Segment a scan (a Scan or a path). ``time_limit_s``: stop with ResourceLimitError (exit 8)
        at the first stage boundary past that many seconds; running out of memory raises it too."""
        where = scan.source if isinstance(scan, Scan) else str(scan)
        timings = Timings(time_limit_s, where or "scan")
        if not isinstance(scan, (Scan, str, os.PathLike)):
            raise InputError(f"segment() takes a kitsrt.io.Scan or a path, not {type(scan).__name__}; "
                             "wrap an array with kitsrt.io.Scan.from_array(array_kji, geometry)")
        if isinstance(scan, Scan):
            check_image(scan.image, scan.source or "scan")
        else:
            with timings.timer("read"):
                scan = read_ct(scan)
        check_looks_like_ct(scan)
        spec = self.package.spec
        try:
            outcome = kind_of(spec).run(scan, spec, self.backends, timings)
        except MemoryError:
            raise ResourceLimitError(f"{where}: ran out of memory while segmenting; free memory or lower "
                                     "the batch's --memory-budget-gb so such cases are refused up front") from None
        finally:
            if self.release_memory:
                for backend in self.backends.values():
                    backend.release_memory()
                return_free_heap()
        warnings = quality_warnings(outcome.regions, outcome.labels, scan, self.package, self.training,
                                    self.disclaimer)
        report = build_report(scan, outcome.regions, timings.as_dict(), self.backend_name, self.package,
                              self.models, warnings, self.disclaimer)
        if self.backend_choice is not None:
            report["backend_choice"] = self.backend_choice
        return Result(outcome.labels, scan.geometry, report, tuple(outcome.extra.get("boxes", ())))
