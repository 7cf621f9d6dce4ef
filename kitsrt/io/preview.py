"""PNG previews: axial and coronal slices of a CT, with a label map overlaid, in radiological view.

Slices are resampled from physical space (not read off array axes), so they show the patient the
same way whatever the file's axis order: axial with the patient's right on the image's left and
anterior at the top; coronal with superior at the top.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kitsrt.io.scan import Scan, write_image

DISPLAY_WINDOW_HU = (-160.0, 240.0)  # soft-tissue window, level 40, width 400
LABEL_COLORS = {1: (40, 200, 90), 2: (235, 60, 50)}  # kidney green, tumor red
OVERLAY_ALPHA = 0.45
PIXEL_MM = 0.8

# Columns of each view's direction matrix: image x, image y, and the (unit) slice normal, in LPS.
_VIEWS = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
}


def _plane(image: sitk.Image, center_mm, view: str, field_mm: float, interpolator) -> np.ndarray:
    u, v, n = (np.asarray(c) for c in _VIEWS[view])
    pixels = int(round(field_mm / PIXEL_MM))
    origin = np.asarray(center_mm) - (u + v) * field_mm / 2.0
    reference = sitk.Image([pixels, pixels, 1], image.GetPixelID())
    reference.SetSpacing((PIXEL_MM, PIXEL_MM, 1.0))
    reference.SetOrigin(tuple(origin))
    reference.SetDirection(tuple(np.stack([u, v, n], axis=1).ravel()))
    default = -1024.0 if interpolator == sitk.sitkLinear else 0.0
    plane = sitk.Resample(image, reference, sitk.Transform(), interpolator, default)
    return sitk.GetArrayFromImage(plane)[0]


def _compose(ct_plane: np.ndarray, label_plane: np.ndarray | None) -> np.ndarray:
    low, high = DISPLAY_WINDOW_HU
    grey = np.clip((ct_plane.astype(np.float32) - low) / (high - low), 0, 1) * 255
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if label_plane is not None:
        for label, color in LABEL_COLORS.items():
            hit = label_plane == label
            rgb[hit] = (1 - OVERLAY_ALPHA) * rgb[hit] + OVERLAY_ALPHA * np.asarray(color)
    return rgb.astype(np.uint8)


def render_views(ct: Scan, labels: Scan | None, centers_mm: list, field_mm: float = 380.0) -> np.ndarray:
    """An RGB uint8 mosaic: one row per centre point, axial on the left and coronal on the right."""
    rows = []
    for center in centers_mm:
        tiles = []
        for view in ("axial", "coronal"):
            ct_plane = _plane(ct.image, center, view, field_mm, sitk.sitkLinear)
            label_plane = None if labels is None else _plane(labels.image, center, view, field_mm,
                                                            sitk.sitkNearestNeighbor)
            tiles.append(_compose(ct_plane, label_plane))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def _scan_box_mm(geometry) -> tuple[np.ndarray, np.ndarray]:
    """Low and high LPS corners (mm) of the box spanned by a grid's voxel centres."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64)
    points = geometry.index_to_physical(corners * (np.asarray(geometry.size) - 1))
    return points.min(axis=0), points.max(axis=0)


def _whole_plane(image: sitk.Image, center_mm, view: str, box, pixel_mm: float, interpolator) -> np.ndarray:
    """A plane through ``center_mm`` spanning the scan's whole physical box in the view's two
    directions (so no part of the body is cut off), ``pixel_mm`` per pixel."""
    u, v, n = (np.asarray(c) for c in _VIEWS[view])
    low, high = box
    mid = (low + high) / 2.0
    extent_u, extent_v = float(np.abs(u) @ (high - low)), float(np.abs(v) @ (high - low))
    size = (max(int(np.ceil(extent_u / pixel_mm)) + 1, 2), max(int(np.ceil(extent_v / pixel_mm)) + 1, 2))
    point = mid + (np.asarray(center_mm) - mid) @ n * n  # the slice through center, centred on the scan
    origin = point - u * (size[0] - 1) * pixel_mm / 2.0 - v * (size[1] - 1) * pixel_mm / 2.0
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([size[0], size[1], 1])
    resampler.SetOutputSpacing((pixel_mm, pixel_mm, 1.0))
    resampler.SetOutputOrigin(tuple(origin))
    resampler.SetOutputDirection(tuple(np.stack([u, v, n], axis=1).ravel()))
    resampler.SetInterpolator(interpolator)
    resampler.SetDefaultPixelValue(-1024.0 if interpolator == sitk.sitkLinear else 0.0)
    return sitk.GetArrayFromImage(resampler.Execute(image))[0]


# Orientation letters at the (left, right, top, bottom) edges of each view, radiological convention.
_MARKERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I")}
_TEXT, _MUTED, _WARN, _BACKGROUND = (235, 235, 235), (170, 170, 170), (255, 200, 60), (0, 0, 0)
_DISCLAIMER, _FRAME = (255, 140, 40), (90, 90, 90)


def _require_pillow():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        from kitsrt.errors import BackendUnavailable

        raise BackendUnavailable("--preview needs Pillow to draw its legend and labels: "
                                 "pip install 'kitsrt[preview]'") from None
    return Image, ImageDraw, ImageFont


def _font(size: int):
    _, _, font = _require_pillow()
    try:
        return font.load_default(size=size)
    except TypeError:  # Pillow without FreeType: one bitmap size
        return font.load_default()


def _wrapped(draw, text: str, font, width_px: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width_px:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def _tile(ct: Scan, labels: Scan, center_mm, view: str, box, pixel_mm: float):
    """One annotated view (PIL image) through ``center_mm`` with its orientation letters."""
    image_module, draw_module, _ = _require_pillow()
    rgb = _compose(_whole_plane(ct.image, center_mm, view, box, pixel_mm, sitk.sitkLinear),
                   _whole_plane(labels.image, center_mm, view, box, pixel_mm, sitk.sitkNearestNeighbor))
    tile = image_module.fromarray(rgb)
    draw, font = draw_module.Draw(tile), _font(16)
    left, right, top, bottom = _MARKERS[view]
    h, w = rgb.shape[:2]
    for text, xy, anchor in ((left, (4, h // 2), "lm"), (right, (w - 4, h // 2), "rm"),
                             (top, (w // 2, 4), "mt"), (bottom, (w // 2, h - 4), "mb")):
        draw.text(xy, text, fill=(255, 255, 0), font=font, anchor=anchor, stroke_width=2, stroke_fill=(0, 0, 0))
    return tile


def render_report_preview(ct: Scan, labels: Scan, rows: list[tuple[str, tuple]], title: str,
                          disclaimer: str, warnings: list[str], max_tile_px: int = 360) -> np.ndarray:
    """An RGB uint8 page a person can read: title (case name), legend, the disclaimer, then one row
    per (caption, LPS point) with an axial and a coronal view through that point, each showing the
    whole scan with orientation letters (R/L, A/P, S/I), and the warnings at the bottom."""
    image_module, draw_module, _ = _require_pillow()
    box = _scan_box_mm(ct.geometry)
    pixel_mm = max(float(np.max(box[1] - box[0])) / max_tile_px, 0.5)
    tiles = [[_tile(ct, labels, center, view, box, pixel_mm) for view in ("axial", "coronal")] for _, center in rows]
    width = max(sum(t.width for t in row) + 30 for row in tiles) if tiles else 600
    width = max(width, 600)
    body, small, big = _font(15), _font(13), _font(20)
    measure = draw_module.Draw(image_module.new("RGB", (1, 1)))
    header = ([(line, big, _TEXT) for line in _wrapped(measure, title, big, width - 20)]
              + [(line, body, _DISCLAIMER) for line in _wrapped(measure, disclaimer, body, width - 20)])
    footer = [(line, small, _WARN) for text in warnings
              for line in _wrapped(measure, f"warning: {text}", small, width - 20)]
    row_heights = [max(t.height for t in row) + 26 for row in tiles]
    height = 12 + 24 * len(header) + 26 + sum(row_heights) + 18 * len(footer) + 12
    page = image_module.new("RGB", (width, height), _BACKGROUND)
    draw = draw_module.Draw(page)
    y = 10
    for text, font, color in header:
        draw.text((10, y), text, fill=color, font=font)
        y += 24
    x = 10
    for name, color in (("kidney", LABEL_COLORS[1]), ("tumor", LABEL_COLORS[2])):
        draw.rectangle((x, y + 3, x + 14, y + 17), fill=color)
        draw.text((x + 20, y + 1), name, fill=_TEXT, font=body)
        x += 40 + int(draw.textlength(name, font=body))
    draw.text((x, y + 1), "axial (left), coronal (right); radiological view: patient's right on the image's left",
              fill=_MUTED, font=small)
    y += 26
    for (caption, _), row, row_height in zip(rows, tiles, row_heights):
        draw.text((10, y + 3), caption, fill=_TEXT, font=body)
        x = 10
        for tile in row:
            page.paste(tile, (x, y + 24))
            draw.rectangle((x - 1, y + 23, x + tile.width, y + 24 + tile.height), outline=_FRAME)
            x += tile.width + 10
        y += row_height
    for text, font, color in footer:
        draw.text((10, y), text, fill=color, font=font)
        y += 18
    return np.asarray(page, dtype=np.uint8)


def write_png(rgb: np.ndarray, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write an (H, W, 3) uint8 array as PNG, atomically."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(rgb), isVector=True)
    return write_image(image, path, overwrite, allowed_suffixes=(".png",))


def volume_center_mm(scan: Scan) -> tuple[float, float, float]:
    geometry = scan.geometry
    return tuple(geometry.index_to_physical((np.asarray(geometry.size) - 1) / 2.0))
