"""``kitsrt bench`` as one library call: phantoms at KiTS19 geometries, every configuration timed,
the report written as bench.json, bench.md and (with matplotlib) bench.png."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from kitsrt.bench.latency import (
    KITS19_BENCH_CASES,
    bench_case,
    bench_configs,
    bench_scans,
    describe_machine,
    markdown_table,
    plot_png,
)
from kitsrt.errors import InputError
from kitsrt.io import write_text_atomic

# ../shared/data/kits19 beside a checkout of the repository (this workplace's layout); absent elsewhere.
SHARED_KITS19 = Path(__file__).resolve().parents[3] / "shared" / "data" / "kits19"


def require_bench_extra(baselines: bool = True) -> None:
    """torch and MONAI, which the bundled cascade's baselines need (a ``--model`` run needs neither)."""
    if not baselines:
        return
    from kitsrt.training import require_torch

    require_torch()
    try:
        import monai  # noqa: F401
    except ImportError:
        raise InputError("kitsrt bench needs MONAI for its sliding-window baseline: pip install -e '.[bench]'") from None


def check_cases(cases: list[str]) -> None:
    """Refuse a ``--cases`` name that is not one of the bench's cases (before any work)."""
    unknown = [c for c in cases if c not in KITS19_BENCH_CASES]
    if unknown:
        raise InputError(f"--cases {','.join(unknown)}: no such case; choose from {', '.join(KITS19_BENCH_CASES)}")


def run_bench(out: Path, kits19: Path | None, runs: int, threads: int, backends: list[str], precisions: list[str],
              baseline_windows: int, full_baseline: bool, work: Path | None, quick: bool, cases: list[str],
              rounds: int, throughput: bool, progress: Callable[[str], None],
              model: Path | None = None) -> tuple[dict, str, bool]:
    """Time every (backend, precision) on each case; returns (report, markdown table, whether a PNG
    was written). ``kits19`` None: the shared KiTS19 folder when present, else procedural cases.
    ``model``: a package of any kind instead of the bundled cascade (timed per stage, no baselines)."""
    if model is not None:
        from kitsrt.runtime.package import load_package

        load_package(model)  # a bad package fails here, in one line, before any phantom is made
        if throughput:
            raise InputError("--throughput times the bundled cascade only; leave out --model or --throughput")
    require_bench_extra(baselines=model is None)
    check_cases(cases)
    out.mkdir(parents=True, exist_ok=True)
    kits19 = kits19 or (SHARED_KITS19 if SHARED_KITS19.exists() else None)
    configs = bench_configs(backends, precisions)
    with tempfile.TemporaryDirectory() as tmp:
        scans = bench_scans(kits19, work or Path(tmp), quick)
        if cases and not quick:  # --quick: its one tiny case, whatever --cases says
            scans = [(name, path) for name, path in scans if name.split(" ")[0] in cases]
        results = [bench_case(name, path, configs, runs, threads, 1 if quick else baseline_windows, full_baseline,
                              progress=progress, rounds=rounds, model=model) for name, path in scans]
        report = {"machine": describe_machine(), "runs": runs, "rounds": rounds, "threads": threads, "cases": results}
        if model is not None:
            from kitsrt.runtime.package import load_package

            report["package"] = {"path": str(model), "kind": load_package(model).spec.kind}
        if throughput:
            from kitsrt.bench.throughput import bench_throughput, throughput_scans

            paths = throughput_scans(kits19, work or Path(tmp), 2 if quick else 10, quick)
            report["throughput"] = bench_throughput(paths, *configs[0], threads, 1 if quick else min(runs, 2),
                                                    progress=progress)
    write_text_atomic(json.dumps(report, indent=2) + "\n", out / "bench.json", overwrite=True)
    table = markdown_table(report)
    write_text_atomic(table + "\n", out / "bench.md", overwrite=True)
    return report, table, plot_png(report, out / "bench.png")
