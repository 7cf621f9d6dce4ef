"""Outputs never touch inputs, and kitsrt's own outputs are never taken for scans.

An output is refused when it is any file the run reads: the same path once links are resolved, or
the same file under another name (same device and inode: a hard link). The files a scan reads are
the scan file itself, the data file a MetaImage/NRRD header names, and every file of a DICOM folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from kitsrt.errors import InputError, KitsrtError
from kitsrt.io.files import is_temporary

# What kitsrt writes beside scans: label maps (<case>_seg.<ext>), reports, previews, scores.
OWN_OUTPUT = re.compile(r".*_seg\.(nii|nii\.gz|nrrd|nhdr|mha|mhd|dcm)$", re.IGNORECASE)


def is_own_output(path: Path) -> bool:
    """A file kitsrt writes (a ``*_seg.*`` label map) or a temporary file it left behind."""
    return is_temporary(path) or bool(OWN_OUTPUT.fullmatch(path.name))


def files_read_for(scan: Path) -> list[Path]:
    """The files reading ``scan`` opens: itself, a header's data file, or a DICOM folder's files."""
    scan = Path(scan)
    if scan.is_dir():
        return [p for p in scan.rglob("*") if p.is_file()]
    files = [scan]
    if scan.name.lower().endswith((".mhd", ".nhdr")):
        from kitsrt.io.text_header import data_location

        try:
            files.append(data_location(scan, allow_external=True).file)
        except (KitsrtError, OSError, ValueError):
            pass   # the read itself will refuse this header
    return files


def _identity(path: Path) -> tuple:
    try:
        info = os.stat(path)
        return (info.st_dev, info.st_ino)
    except OSError:
        return (None, str(Path(path).resolve()))


def check_outputs_apart(outputs: Iterable[Path | None], inputs: Iterable[Path]) -> None:
    """Refuse an output that is one of the ``inputs`` (same resolved path or same inode), or two
    outputs that are one file."""
    read = {}
    for item in inputs:
        for path in (files_read_for(item) if Path(item).exists() else [Path(item)]):
            read[_identity(path)] = path
            read[(None, str(Path(path).resolve()))] = path
    seen = {}
    for output in (Path(o) for o in outputs if o is not None):
        keys = {_identity(output), (None, str(output.resolve()))}
        for key in keys:
            if key in read:
                raise InputError(f"{output}: is the input {read[key]} (or the same file); an output must never "
                                 "replace a file the run reads: choose another output name")
            if key in seen:
                raise InputError(f"{output}: given for two outputs (also {seen[key]}); give each output its own name")
        seen.update(dict.fromkeys(keys, output))
