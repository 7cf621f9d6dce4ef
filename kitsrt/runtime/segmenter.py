"""The embeddable API: ``Segmenter.load(package, backend=...).segment(scan_or_path) -> Result``.

A Segmenter holds one loaded backend per stage and nothing else that changes, so one instance can
serve several threads at once (backends' ``infer`` is thread-safe). It never imports torch unless
the torch backend is asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kitsrt.engines import create_backend
from kitsrt.errors import InputError
from kitsrt.io import Geometry, Scan, read_scan, write_label_map
from kitsrt.runtime.cascade import coarse_stage, fine_stage, find_vois, paste
from kitsrt.runtime.package import ModelPackage, load_package
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


def variant_path(package: ModelPackage, stage: str, precision: str) -> Path:
    """``<stage>.<precision>.onnx`` of a package, checked against the SHA-256 in its own card."""
    import json

    from kitsrt.errors import ModelPackageError
    from kitsrt.io import sha256_of

    base = package.model_path(getattr(package.spec, stage))
    path = base.with_name(f"{base.stem}.{precision}.onnx")
    card = path.with_suffix(".json")
    if not path.exists() or not card.exists():
        raise ModelPackageError(f"{path}: no {precision} variant in the package; build it with "
                                f"`kitsrt quantize --precision {precision}`")
    if sha256_of(path) != json.loads(card.read_text()).get("onnx_sha256"):
        raise ModelPackageError(f"{path}: SHA-256 does not match its card {card.name}; rebuild the variant")
    return path


def check_looks_like_ct(scan: Scan) -> None:
    """Refuse scans whose values are not CT Hounsfield units (MR, PET, raw stored values)."""
    sample = scan.array[::4, ::4, ::4]
    low, high = float(sample.min()), float(sample.max())
    where = scan.source or "scan"
    if low < CT_MIN_HU or high > CT_MAX_HU:
        raise InputError(f"{where}: values from {low:g} to {high:g} are outside the CT range "
                         f"[{CT_MIN_HU:g}, {CT_MAX_HU:g}] HU; kitsrt needs CT in Hounsfield units")
    if low > AIR_BELOW_HU:
        raise InputError(f"{where}: lowest value is {low:g}, no air below {AIR_BELOW_HU:g} HU; this does not "
                         "look like CT in Hounsfield units (raw stored values without the rescale "
                         "intercept, or another modality?)")


class Segmenter:
    def __init__(self, package: ModelPackage, coarse, fine, backend_name: str):
        self.package = package
        self.coarse_backend = coarse
        self.fine_backend = fine
        self.backend_name = backend_name

    @classmethod
    def load(cls, package: str | os.PathLike | None = None, backend: str = "onnxruntime",
             threads: int = 0, precision: str = "fp32", model_files: dict[str, Path] | None = None) -> Segmenter:
        """Load a model package (default: the bundled demo) on a backend, once.

        ``precision`` picks the package's ``<stage>.<precision>.onnx`` variants (fp16, int8);
        ``model_files`` overrides the file of individual stages (used by the precision gate).
        """
        pkg = load_package(Path(package) if package is not None else None)
        files = {"coarse": pkg.model_path(pkg.spec.coarse), "fine": pkg.model_path(pkg.spec.fine)}
        if precision != "fp32":
            files = {stage: variant_path(pkg, stage, precision) for stage in files}
        files.update(model_files or {})
        coarse = create_backend(backend, str(files["coarse"]), threads).load()
        try:
            fine = create_backend(backend, str(files["fine"]), threads).load()
        except Exception:
            coarse.close()
            raise
        name = coarse.describe() + ("" if precision == "fp32" else f", {precision}")
        return cls(pkg, coarse, fine, name)

    def close(self) -> None:
        self.coarse_backend.close()
        self.fine_backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def segment(self, scan: Scan | str | os.PathLike) -> Result:
        timings = Timings()
        if not isinstance(scan, Scan):
            with timings.timer("read"):
                scan = read_scan(scan)
        check_looks_like_ct(scan)
        spec = self.package.spec
        coarse = coarse_stage(scan, spec, self.coarse_backend, timings)
        with timings.timer("voi"):
            boxes = find_vois(coarse, scan, spec)
        vois = [fine_stage(scan, box, spec, self.fine_backend, timings) for box in boxes]
        with timings.timer("postprocess"):
            labels = paste(vois, scan.geometry)
        report = build_report(scan.source, scan.geometry, vois, coarse.body_mid_x_mm, timings.as_dict(),
                              self.backend_name, self.package)
        if scan.dicom is not None:
            report["dicom"] = scan.dicom.as_dict()
        return Result(labels, scan.geometry, report, tuple(v.box for v in vois))
