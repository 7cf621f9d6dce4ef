"""Resampling an image onto a given grid, shared by the runtime and the phantom generator."""

from __future__ import annotations

import SimpleITK as sitk

from kitsrt.io.scan import Geometry


def resample_onto(image: sitk.Image, grid: Geometry, interpolator, default: float, pixel_id: int) -> sitk.Image:
    """Resample ``image`` onto ``grid`` (identity transform), without allocating a reference image."""
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(list(grid.size))
    resampler.SetOutputSpacing(grid.spacing_mm)
    resampler.SetOutputOrigin(grid.origin_mm)
    resampler.SetOutputDirection(grid.direction)
    resampler.SetInterpolator(interpolator)
    resampler.SetDefaultPixelValue(default)
    resampler.SetOutputPixelType(pixel_id)
    return resampler.Execute(image)
