"""Scan and label-map I/O with exact geometry. Axis order is documented in ``kitsrt.io.scan``."""

from kitsrt.io.files import sha256_of, write_bytes_atomic, write_text_atomic
from kitsrt.io.dicom import DicomInfo, is_dicom_folder
from kitsrt.io.scan import (
    LOSSY_GEOMETRY_SUFFIXES,
    OUTPUT_SUFFIXES,
    SUPPORTED_SUFFIXES,
    Geometry,
    GeometryDrift,
    Scan,
    check_image,
    check_output_path,
    check_written_geometry,
    geometry_drift,
    header_voxel_count,
    read_ct,
    read_label_map,
    read_scan,
    write_image,
    write_label_map,
)

__all__ = [
    "DicomInfo",
    "GeometryDrift",
    "LOSSY_GEOMETRY_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "Geometry",
    "Scan",
    "check_image",
    "check_output_path",
    "check_written_geometry",
    "geometry_drift",
    "header_voxel_count",
    "is_dicom_folder",
    "read_ct",
    "read_label_map",
    "read_scan",
    "write_image",
    "write_label_map",
    "sha256_of",
    "write_bytes_atomic",
    "write_text_atomic",
]
