"""A cascade result as a DICOM SEG referencing the series it was computed from (``dicom`` extra)."""

from __future__ import annotations

import os
from pathlib import Path

from kitsrt.io.dicom_seg import SegAlgorithm, build_seg, source_instances, write_seg
from kitsrt.runtime.package import ModelPackage


def seg_algorithm(package: ModelPackage) -> SegAlgorithm:
    """Name, kitsrt version and model SHA-256s of a package; ``demo`` when a model card says so."""
    from kitsrt._version import __version__

    cards = [package.card(network) for network in package.spec.networks().values()]
    demo = any("demo" in str(card.get("disclaimer", "")).lower() for card in cards)
    return SegAlgorithm(name=package.spec.name, version=__version__, model_sha256=dict(package.hashes), demo=demo)


def seg_of_result(result, series_folder: str | os.PathLike, algorithm: SegAlgorithm):
    """The highdicom Segmentation of a ``Result`` computed from the DICOM series in ``series_folder``."""
    series_uid = result.report.get("dicom", {}).get("series_instance_uid")  # the series read_scan chose
    instances = source_instances(series_folder, result.geometry, series_uid or None)
    return build_seg(result.labels, result.geometry, instances, algorithm)


def write_result_seg(result, series_folder: str | os.PathLike, path: str | os.PathLike,
                     algorithm: SegAlgorithm, overwrite: bool = False) -> Path:
    """Write a ``Result`` as a DICOM SEG file, atomically."""
    return write_seg(seg_of_result(result, series_folder, algorithm), path, overwrite)


def seg_writer(series_folder: Path, package: ModelPackage):
    """A ``write_labels(result, path, overwrite)`` writing the result as a DICOM SEG that references
    the series in ``series_folder`` (needs the dicom extra)."""
    from kitsrt.io.dicom_seg import require_highdicom

    require_highdicom()
    algorithm = seg_algorithm(package)
    return lambda result, path, overwrite: write_result_seg(result, series_folder, path, algorithm, overwrite)
