"""`kitsrt quantize`: FP16 / INT8 variants and the BF16 gate, behind the accuracy gate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kitsrt.cli.app import app, say, user_errors
from kitsrt.cli.options import comma_list, finite
from kitsrt.errors import InputError


@app.command()
@user_errors
def quantize(
    calibration: Path = typer.Option(..., "--calibration", help="Calibration set folder from `kitsrt calibrate`."),
    precision: str = typer.Option("int8", help="int8 (Q/DQ), fp16, or bf16 (OpenVINO runtime precision: gate only, no file)."),
    method: str = typer.Option("minmax", help="INT8 calibration: minmax, entropy or percentile."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model package (default: demo); variants are written into it."),
    max_dice_drop: float = typer.Option(0.005, min=-1.0, max=1.0, help="Refuse when composite Dice falls by more than this (negative: demand a gain)."),
    force: bool = typer.Option(False, help="Keep the variant even when the gate fails (recorded in its card)."),
    ops: str = typer.Option("Conv,ConvTranspose,Add", help="INT8: op types to quantize (TensorRT fuses these)."),
    target_agreement: float = typer.Option(
        0.99, help="INT8: keep the most sensitive layers in float until each network's labels on calibration "
                   "inputs agree with FP32 at least this much (worst class Dice); 0 quantizes every layer."),
    probe_inputs: int = typer.Option(4, min=1, max=1000, help="INT8: calibration inputs the sensitivity search measures on."),
    threads: int = typer.Option(0, min=0, max=256, help="onnxruntime threads."),
):
    """Make FP16 or INT8 Q/DQ variants of every network of a package (any kind, by role) and gate
    them on the held-out split (bf16: gate OpenVINO's BF16 inference of the FP32 files and record it
    in <role>.bf16.json).

    Writes <role>.<precision>.onnx and its card (with a `gate` object) into the package; exit 5 and
    no file when the composite Dice drops by more than --max-dice-drop; exit 4 for a calibration set
    made for another package or kind. INT8 runs a per-layer sensitivity search first (minutes):
    layers that cost most accuracy stay in float.

    Example: kitsrt quantize --calibration calib/ --precision int8 --method entropy
    """
    from kitsrt.calibration.variants import gate_runtime_precision, make_variants

    if precision not in ("int8", "fp16", "bf16"):
        raise InputError(f"--precision {precision!r}: expected int8, fp16 or bf16")
    finite(max_dice_drop, "max-dice-drop", -1.0, 1.0)
    if precision == "bf16":
        gate = gate_runtime_precision(model, calibration, precision, max_dice_drop, force, threads)
        say(f"bf16 (OpenVINO) gate on {gate['heldout_cases']} held-out cases: composite Dice delta "
                  f"{gate['composite_dice_delta']:+.4f}, argmax agreement {gate['argmax_agreement']:.4f}, "
                  f"{'passed' if gate['passed'] else 'FAILED (kept: --force)'}")
        return
    from kitsrt.calibration.precision import METHODS

    if method not in METHODS:
        raise InputError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if not 0 <= target_agreement <= 1 or probe_inputs < 1:
        raise InputError(f"--target-agreement {target_agreement} / --probe-inputs {probe_inputs}: expected "
                         "an agreement in [0, 1] and at least one probe input")
    gate = make_variants(model, calibration, precision, method, max_dice_drop, force, threads,
                         comma_list(ops), target_agreement, probe_inputs)
    say(f"{precision} gate on {gate['heldout_cases']} held-out cases: composite Dice delta "
              f"{gate['composite_dice_delta']:+.4f}, argmax agreement {gate['argmax_agreement']:.4f}, "
              f"{'passed' if gate['passed'] else 'FAILED (kept: --force)'}")
    for role, nodes in (gate.get("float_nodes") or {}).items():
        say(f"{role}: {len(nodes)} sensitive layer(s) kept in float")
