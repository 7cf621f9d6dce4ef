"""Writing a phantom to disk: the CT as an image file or a DICOM series, its label map, a preview."""

from __future__ import annotations

from pathlib import Path

from kitsrt.errors import InputError
from kitsrt.io import Scan, check_output_path, write_image, write_label_map
from kitsrt.io.masks import bounding_box
from kitsrt.io.outputs import check_outputs_apart
from kitsrt.phantom.ct import procedural_label_map, synthesize_ct

OUTPUT_FORMATS = ("image", "dicom")
PHANTOM_CONTRAST_AGENT = "IODINATED (synthetic phantom)"  # the default phantom is contrast-enhanced


def check_dicom_folder_output(folder: Path, overwrite: bool) -> None:
    from kitsrt.io.dicom_series import require_pydicom

    require_pydicom()
    if folder.exists() and not overwrite:
        raise InputError(f"{folder}: output already exists; pass --overwrite to replace it")
    if not folder.parent.exists():
        raise InputError(f"{folder.parent}: output folder does not exist")


def check_phantom_outputs(output: Path, output_format: str, label_out: Path | None, preview: Path | None,
                          inputs: list[Path], overwrite: bool) -> None:
    """Refuse, before any work, an unknown format or an output that exists, is an input or another output."""
    if output_format not in OUTPUT_FORMATS:
        raise InputError(f"--format {output_format!r}: expected image or dicom")
    if output_format == "dicom":
        check_dicom_folder_output(output, overwrite)
    else:
        check_output_path(output, overwrite)
    if label_out is not None:
        check_output_path(label_out, overwrite)
    if preview is not None:
        check_output_path(preview, overwrite, (".png",))
    check_outputs_apart([output, label_out, preview], inputs)


def write_phantom_preview(ct: Scan, labels: Scan, path: Path, overwrite: bool) -> None:
    """Axial and coronal slices through the labelled structures (the scan's middle when there are none)."""
    from kitsrt.io.preview import render_views, volume_center_mm, write_png

    box = bounding_box(labels.array > 0)
    if box is None:
        center = volume_center_mm(ct)
    else:
        center_kji = [(s.start + s.stop - 1) / 2.0 for s in box]
        center = tuple(ct.geometry.index_to_physical([list(reversed(center_kji))])[0])
    write_png(render_views(ct, None, [center]), path, overwrite)


def make_phantom(labels: Scan | None, output: Path, output_format: str, seed: int,
                 procedural_grid: tuple[tuple[int, int, int], tuple[float, float, float]] | None = None,
                 label_out: Path | None = None, preview: Path | None = None, overwrite: bool = False) -> Scan:
    """Synthesize the CT around ``labels`` (or a procedural label map on ``procedural_grid`` = (size
    i,j,k, spacing mm)) and write it, the label map and the preview. Returns the CT."""
    if (labels is None) == (procedural_grid is None):
        raise InputError("give a LABEL map or --procedural, not both and not neither")
    if labels is None:
        labels = procedural_label_map(procedural_grid[0], procedural_grid[1], seed)
    ct = synthesize_ct(labels, seed)
    if output_format == "dicom":
        from kitsrt.io.dicom_series import write_ct_series

        write_ct_series(ct, output, overwrite, patient_name=f"KITSRT^PHANTOM {seed}",
                        contrast_agent=PHANTOM_CONTRAST_AGENT)
    else:
        write_image(ct.image, output, overwrite)
    if label_out is not None:
        write_label_map(labels.array, labels.geometry, label_out, overwrite)
    if preview is not None:
        write_phantom_preview(ct, labels, preview, overwrite)
    return ct
