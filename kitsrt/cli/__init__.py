"""The `kitsrt` command: one module per command, parsing and printing only; the work lives in the
library (kitsrt.runtime, kitsrt.calibration, kitsrt.export, kitsrt.bench, ...)."""

from kitsrt.cli import bench, build, calibrate, eval, export, imports, infer, phantom, quantize, serve, train  # noqa: F401
from kitsrt.cli.app import app, main

__all__ = ["app", "main"]
