"""Fuzz the scan reader: mutated NIfTI / MetaImage / NRRD files through ``kitsrt.io.read_scan``.

Every mutation must end in a Scan that passed validation or in a one-line ``KitsrtError`` that names
the file. Anything else is a finding: another exception ("crash"), a message spread over several
lines or not naming the file ("unclear"), a dead worker process ("died", e.g. a segfault in ITK) or a
case that does not finish within ``--case-timeout`` seconds ("hang"). Cases run in a worker process
watched by this one: a hang or a death is recorded and the worker restarted at the next case.

Seeds are small valid files written here by SimpleITK (and nibabel when installed): NIfTI-1/2 plain
and gzip, int16 with ``scl_slope``, float32, MetaImage (LOCAL, compressed, detached), NRRD (raw, gzip,
detached). Mutations (a seeded RNG per case, so a case number reproduces its file): random bytes in
the header, special numbers (NaN, +-Inf, 0, -1, huge) written into NIfTI header fields, numbers in
text headers replaced by special tokens, truncation, appended bytes, bytes flipped in the payload.

    nice -n 10 python benchmarks/fuzz_headers.py --mutations 100000 --out benchmarks/results/fuzz_headers.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import queue
import re
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

SPECIAL_FLOATS = (float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e-30, 1e30, 3.4e38, -3.4e38)
SPECIAL_INTS = (0, -1, 1, 2, 7, 8, 32767, -32768, 2**31 - 1, -(2**31))
TEXT_TOKENS = (b"nan", b"inf", b"-inf", b"0", b"-1", b"1e308", b"99999999999", b"", b"x", b"1e-300")
# NIfTI-1 fields: (offset, struct format)
NIFTI1_FIELDS = [(0, "i"), (40, "h"), (42, "h"), (44, "h"), (46, "h"), (48, "h"), (70, "h"), (72, "h"),
                 (76, "f"), (80, "f"), (84, "f"), (88, "f"), (108, "f"), (112, "f"), (116, "f"), (252, "h"),
                 (254, "h"), (256, "f"), (260, "f"), (264, "f"), (268, "f"), (272, "f"), (276, "f")] + [
                 (280 + 4 * i, "f") for i in range(12)]
NIFTI2_FIELDS = [(0, "i"), (12, "h"), (14, "h"), (16, "q"), (24, "q"), (32, "q"), (40, "q"), (104, "d"),
                 (112, "d"), (120, "d"), (168, "q"), (176, "d"), (184, "d"), (344, "i"), (348, "i")] + [
                 (352 + 8 * i, "d") for i in range(18)]


def make_seeds(folder: Path) -> dict[str, dict[str, bytes]]:
    """Small valid files: seed name -> {file name: bytes} (detached formats have two files)."""
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    ct = rng.integers(-1024, 1500, (6, 7, 8)).astype(np.int16)
    image = sitk.GetImageFromArray(ct)
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((-10.0, 5.0, 30.0))
    seeds = {}

    def write(name, img, *, compress=False, extra=()):
        sub = folder / name
        sub.mkdir(parents=True)
        path = sub / name
        sitk.WriteImage(img, str(path), useCompression=compress)
        seeds[name] = {p.name: p.read_bytes() for p in sub.iterdir()}

    write("int16.nii", image)
    write("int16.nii.gz", image, compress=True)
    write("float32.nii.gz", sitk.Cast(image, sitk.sitkFloat32), compress=True)
    write("int16.mha", image)
    write("int16z.mha", image, compress=True)
    write("int16.mhd", image)
    write("int16.nrrd", image)
    write("int16z.nrrd", image, compress=True)
    write("int16.nhdr", image)
    try:
        import nibabel as nib

        for name, header_class in (("scaled.nii.gz", nib.Nifti1Image), ("nifti2.nii", nib.Nifti2Image)):
            img = header_class(ct.transpose(2, 1, 0), np.diag([0.8, 0.9, 2.5, 1.0]))
            if name.startswith("scaled"):
                img.header.set_slope_inter(0.5, -10.0)
            sub = folder / name
            sub.mkdir(parents=True)
            nib.save(img, str(sub / name))
            seeds[name] = {name: (sub / name).read_bytes()}
    except ImportError:
        pass
    return seeds


def _nifti_mutation(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    compressed = data[:2] == b"\x1f\x8b"
    raw = bytearray(gzip.decompress(data) if compressed else data)
    version = 2 if struct.unpack("<i", raw[:4])[0] == 540 else 1
    fields = NIFTI2_FIELDS if version == 2 else NIFTI1_FIELDS
    what = []
    for _ in range(int(rng.integers(1, 4))):
        offset, fmt = fields[int(rng.integers(len(fields)))]
        if fmt in "fd":
            value = SPECIAL_FLOATS[int(rng.integers(len(SPECIAL_FLOATS)))] if rng.random() < 0.8 else float(rng.normal(0, 1e3))
        else:
            value = SPECIAL_INTS[int(rng.integers(len(SPECIAL_INTS)))] if rng.random() < 0.8 else int(rng.integers(-5, 600))
        if fmt in "hiq":   # wrap into the field's range, as a corrupt file would hold it
            bits = struct.calcsize(fmt) * 8
            value = (value + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)
        struct.pack_into("<" + fmt, raw, offset, value)
        what.append(f"{offset}:{fmt}={value}")
    if compressed and rng.random() < 0.5:   # keep the gzip trailer consistent half of the time
        return gzip.compress(bytes(raw)), "nifti fields " + ",".join(what)
    return (gzip.compress(bytes(raw)) if compressed else bytes(raw)), "nifti fields " + ",".join(what)


def _text_mutation(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    end = data.find(b"\n\n") if data.startswith(b"NRRD") else data.find(b"ElementDataFile")
    end = len(data) if end < 0 else end
    numbers = [m for m in re.finditer(rb"-?\d+(\.\d+)?(e-?\d+)?", data[:end])]
    if not numbers:
        return data, "no numbers"
    out, what = bytearray(data), []
    for m in sorted((numbers[int(rng.integers(len(numbers)))] for _ in range(int(rng.integers(1, 3)))),
                    key=lambda m: -m.start()):
        token = TEXT_TOKENS[int(rng.integers(len(TEXT_TOKENS)))]
        out[m.start():m.end()] = token
        what.append(f"{m.group().decode()}->{token.decode()}")
    return bytes(out), "text numbers " + ",".join(what)


def mutate(seed_files: dict[str, bytes], main_name: str, case: int) -> tuple[dict[str, bytes], str]:
    """A reproducible mutation of one seed: returns the files to write and a description."""
    rng = np.random.default_rng(case)
    files = dict(seed_files)
    data = files[main_name]
    kind = int(rng.integers(6))
    if kind == 0:      # random bytes in the first 600 bytes (the header region)
        raw = bytearray(data)
        for _ in range(int(rng.integers(1, 9))):
            raw[int(rng.integers(min(600, len(raw))))] = int(rng.integers(256))
        files[main_name], what = bytes(raw), "header bytes"
    elif kind == 1 and main_name.endswith((".nii", ".nii.gz")):
        files[main_name], what = _nifti_mutation(data, rng)
    elif kind in (1, 2) and not main_name.endswith((".nii", ".nii.gz")):
        files[main_name], what = _text_mutation(data, rng)
    elif kind == 2:
        files[main_name], what = _nifti_mutation(data, rng)
    elif kind == 3:    # truncation of the main file or of the detached data
        name = main_name if len(files) == 1 or rng.random() < 0.5 else next(n for n in files if n != main_name)
        cut = int(rng.integers(0, len(files[name]) + 1))
        files[name], what = files[name][:cut], f"{name} truncated to {cut}"
    elif kind == 4:    # appended bytes
        files[main_name] = data + rng.bytes(int(rng.integers(1, 4096)))
        what = "appended bytes"
    else:              # bytes flipped anywhere (payload included)
        raw = bytearray(data)
        for _ in range(int(rng.integers(1, 17))):
            raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        files[main_name], what = bytes(raw), "bits flipped"
    return files, f"{main_name}: {what}"


def describe(seeds, case: int) -> str:
    names = sorted(seeds)
    return mutate(seeds[names[case % len(names)]], names[case % len(names)], case)[1]


def run_one(case: int, folder: Path) -> None:
    """Reproduce one case in this process (for a crash or a hang found by ``run``)."""
    from kitsrt.io import read_scan

    seeds = make_seeds(folder / "seeds")
    names = sorted(seeds)
    files, what = mutate(seeds[names[case % len(names)]], names[case % len(names)], case)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    print(what, flush=True)
    read_scan(folder / names[case % len(names)])


def _worker(seeds, start, stop, folder, results, progress):
    """Run cases [start, stop) and put (case, outcome, seconds, detail) on ``results``."""
    from kitsrt.errors import KitsrtError
    from kitsrt.io import read_scan

    names = sorted(seeds)
    for case in range(start, stop):
        progress.value = case
        main_name = names[case % len(names)]
        files, what = mutate(seeds[main_name], main_name, case)
        work = Path(folder) / f"case{case % 4}"
        work.mkdir(exist_ok=True)
        for old in work.iterdir():
            old.unlink()
        for name, data in files.items():
            (work / name).write_bytes(data)
        path = work / main_name
        began = time.perf_counter()
        try:
            read_scan(path)
            outcome, detail = "read", ""
        except KitsrtError as exc:
            text = str(exc)
            unclear = "\n" in text or str(path) not in text
            outcome, detail = ("unclear" if unclear else "refused:" + type(exc).__name__), text[:300]
        except Exception as exc:  # noqa: BLE001 - a finding, recorded
            outcome, detail = "crash", f"{type(exc).__name__}: {exc}"[:300]
        results.put((case, outcome, time.perf_counter() - began, what, detail))
    results.put(None)


def run(mutations: int, case_timeout: float, out: Path | None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="kitsrt-fuzz-"))
    seeds = make_seeds(folder / "seeds")
    context = mp.get_context("spawn")
    outcomes, findings = Counter(), []
    slowest = (0.0, None, "")
    started, case = time.perf_counter(), 0
    while case < mutations:
        results, progress = context.Queue(), context.Value("q", case)
        worker = context.Process(target=_worker, args=(seeds, case, mutations, str(folder / "work"), results,
                                                       progress), daemon=True)
        (folder / "work").mkdir(exist_ok=True)
        worker.start()
        last_seen, finished = time.perf_counter(), False
        while not finished:
            try:
                item = results.get(timeout=1.0)
            except queue.Empty:
                item = "idle"
            if item is None:
                finished = True
                break
            if item == "idle":
                if not worker.is_alive():
                    outcomes["died"] += 1
                    findings.append({"case": progress.value, "outcome": "died", "exitcode": worker.exitcode,
                                     "mutation": describe(seeds, progress.value)})
                    case = progress.value + 1
                    break
                if time.perf_counter() - last_seen > case_timeout:
                    worker.kill()
                    worker.join()
                    outcomes["hang"] += 1
                    findings.append({"case": progress.value, "outcome": "hang",
                                     "mutation": describe(seeds, progress.value)})
                    case = progress.value + 1
                    break
                continue
            last_seen = time.perf_counter()
            number, outcome, seconds, what, detail = item
            outcomes[outcome] += 1
            case = number + 1
            if seconds > slowest[0]:
                slowest = (seconds, number, what)
            if outcome in ("crash", "unclear"):
                findings.append({"case": number, "outcome": outcome, "mutation": what, "detail": detail})
            if number % 5000 == 0:
                print(f"{number} cases, {dict(outcomes)}", file=sys.stderr, flush=True)
        if finished:
            worker.join()
            break
    elapsed = time.perf_counter() - started
    refused = {k: v for k, v in outcomes.items() if k.startswith("refused:")}
    report = {
        "mutations": sum(outcomes.values()),
        "outcomes": dict(outcomes),
        "read_ok": outcomes["read"],
        "refused_with_kitsrt_error": sum(refused.values()),
        "crashes": outcomes["crash"], "unclear_messages": outcomes["unclear"],
        "hangs": outcomes["hang"], "worker_deaths": outcomes["died"],
        "case_timeout_s": case_timeout,
        "slowest_case": {"case": slowest[1], "seconds": round(slowest[0], 4), "mutation": slowest[2]},
        "seconds": round(elapsed, 1),
        "seeds": sorted(seeds),
        "findings": findings[:50],
    }
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutations", type=int, default=100_000)
    parser.add_argument("--case-timeout", type=float, default=20.0, help="seconds before a case counts as a hang")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--case", type=int, default=None, help="reproduce one case in this process")
    args = parser.parse_args()
    if args.case is not None:
        run_one(args.case, Path(tempfile.mkdtemp(prefix="kitsrt-fuzz-case-")))
        return
    report = run(args.mutations, args.case_timeout, args.out)
    print(json.dumps({k: v for k, v in report.items() if k != "findings"}, indent=2))


if __name__ == "__main__":
    main()
