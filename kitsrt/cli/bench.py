"""`kitsrt bench`: latency per stage, backend and precision, next to the alternatives."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from kitsrt.cli.app import app, say, user_errors
from kitsrt.cli.options import comma_list


@app.command()
@user_errors
def bench(
    out: Path = typer.Option(Path("benchmarks/results"), "--out", help="Folder for bench.json, bench.md and bench.png."),
    kits19: Optional[Path] = typer.Option(None, help="KiTS19 label-map folder (default: ../shared/data/kits19 when present)."),
    runs: int = typer.Option(3, min=1, max=1000, help="Warm runs per configuration (after one warm-up)."),
    threads: int = typer.Option(2, min=1, max=256, help="Threads per network, for every backend alike."),
    backends: str = typer.Option("onnxruntime", help="Comma-separated backends to time (torch eager is always the baseline)."),
    precisions: str = typer.Option("fp32", help="Comma-separated precisions to time (fp32, fp16, int8, bf16); "
                                   "each backend runs those it offers."),
    baseline_windows: int = typer.Option(6, min=1, help="Sliding-window baseline: windows timed before scaling to the full count."),
    full_baseline: bool = typer.Option(False, help="Run the sliding-window baseline over the whole scan (slow)."),
    work: Optional[Path] = typer.Option(None, help="Folder to keep the phantom scans between runs."),
    quick: bool = typer.Option(False, help="One tiny procedural case, for a smoke test."),
    cases: str = typer.Option("", help="Comma-separated cases to run (small, median, largest; default all; --quick runs its tiny case)."),
    rounds: int = typer.Option(1, min=1, max=100, help="Interleave the configurations over this many rounds (each a fresh process)."),
    throughput: bool = typer.Option(False, "--throughput", help="Also time 10 median-size phantoms through one "
                                    "loaded Segmenter, overlapped and one by one (scans per hour, CPU use)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Time this package (any kind: cascade, nested, "
                                         "sliding-window) instead of the bundled cascade; no baselines but the decode."),
):
    """Time the cascade per stage on phantoms at real KiTS19 geometries, next to the whole-scan
    sliding window (MONAI), the torch eager cascade and the bare decode, in one run; or, with
    --model, any package per stage, backend and precision.

    Example: kitsrt bench --runs 3   (needs the bench extra: pip install -e '.[bench]')
    Example: kitsrt bench --model kitsrt/packages/seed004_demo --quick --precisions fp32,fp16,int8
    """
    from kitsrt.bench.run import run_bench

    _, table, plotted = run_bench(out, kits19, runs, threads, backends.split(","), precisions.split(","),
                                  baseline_windows, full_baseline, work, quick, comma_list(cases), rounds, throughput,
                                  progress=say, model=model)
    Console(highlight=False, width=200).print(table)
    say(f"wrote {out / 'bench.json'}, {out / 'bench.md'}" + (f", {out / 'bench.png'}" if plotted else
                                                                " (no PNG: matplotlib missing)"))
