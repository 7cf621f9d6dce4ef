"""Parsing of option values typer cannot check itself: comma-separated triples, finite floats, JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

from kitsrt.errors import InputError


def shape_with_channels(text: str, what: str = "input-shape") -> tuple[int, int, int, int]:
    """``C,D,H,W`` as four positive integers."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) <= 0:
        raise InputError(f"--{what} {text!r}: expected four positive integers C,D,H,W, e.g. 1,64,64,64")
    return values


def triple(text: str, what: str, cast=float) -> tuple:
    """Three finite positive numbers separated by commas (e.g. a spacing in mm or a size in voxels)."""
    try:
        values = tuple(cast(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"--{what} {text!r}: expected three finite positive numbers separated by commas, "
                         "e.g. 2.5,2.5,5")
    return values


def finite(value: float, what: str, low: float | None = None, high: float | None = None) -> float:
    """A float option: finite and within [low, high] (typer's FloatRange lets NaN through)."""
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" in [{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise InputError(f"--{what} {value}: expected a finite number{bounds}")
    return value


def json_object(path: Optional[Path]) -> dict:
    """A JSON object from ``path`` ({} for None), or a one-line InputError."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def comma_list(text: str) -> list[str]:
    """Non-empty, stripped items of a comma-separated option."""
    return [item.strip() for item in text.split(",") if item.strip()]
