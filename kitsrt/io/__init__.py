"""Scan and label-map I/O with exact geometry. Axis order is documented in ``kitsrt.io.scan``."""

from kitsrt.io.files import sha256_of, write_bytes_atomic, write_text_atomic
from kitsrt.io.scan import (
    OUTPUT_SUFFIXES,
    SUPPORTED_SUFFIXES,
    Geometry,
    Scan,
    check_output_path,
    read_label_map,
    read_scan,
    write_image,
    write_label_map,
)

__all__ = [
    "OUTPUT_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "Geometry",
    "Scan",
    "check_output_path",
    "read_label_map",
    "read_scan",
    "write_image",
    "write_label_map",
    "sha256_of",
    "write_bytes_atomic",
    "write_text_atomic",
]
