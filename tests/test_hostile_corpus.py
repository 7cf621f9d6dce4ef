"""A generated corpus of hostile inputs through the `kitsrt` command (built here, never committed).

Every case asserts: the documented exit code, one line on stderr that starts with ``error:`` and
names the offending file, no output written, and every input file unchanged (same bytes).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from kitsrt.cli import main
from kitsrt.runtime.package import demo_package_path

SHAPE_KJI = (16, 20, 24)
SPACING = (2.0, 2.0, 3.0)


@dataclass
class Hostile:
    """One bad input: the command line, the files it reads, the outputs it must not create."""

    args: list[str]
    names: str                     # text the error line must contain (the offending file)
    exit_code: int = 2
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


def _ct(dtype=np.int16) -> np.ndarray:
    return np.random.default_rng(0).integers(-1024, 1500, SHAPE_KJI).astype(dtype)


def _itk(array: np.ndarray, path: Path, spacing=SPACING, compress=False) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def _nii(d: Path, name="scan.nii", patches=(), array=None, gz=False) -> Path:
    """A NIfTI-1 written by ITK, then header fields patched: (offset, struct format, value)."""
    plain = _itk(_ct() if array is None else array, d / "base.nii")
    data = bytearray(plain.read_bytes())
    plain.unlink()
    for offset, fmt, value in patches:
        struct.pack_into("<" + fmt, data, offset, value)
    path = d / name
    path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
    return path


def _text(d: Path, suffix: str, replace: tuple[bytes, bytes] | None = None, array=None, compress=False) -> Path:
    path = _itk(_ct() if array is None else array, d / f"scan{suffix}", compress=compress)
    if replace is not None:
        data = path.read_bytes()
        assert replace[0] in data, replace
        path.write_bytes(data.replace(replace[0], replace[1], 1))
    return path


def _infer(path: Path, d: Path, *extra: str, code: int = 2, names: str | None = None) -> Hostile:
    out = d / "out" / "seg.nii.gz"
    out.parent.mkdir(exist_ok=True)
    return Hostile(["infer", str(path), "-o", str(out), *extra], names or path.name, code, [path], [out])


def _nifti_case(patches, gz=False, array=None):
    return lambda d: _infer(_nii(d, "scan.nii.gz" if gz else "scan.nii", patches, array, gz), d)


def _bomb(d: Path) -> Hostile:
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, 1024, 1024, 512, 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, 4, 16)
    struct.pack_into("<8f", header, 76, 1, 0.8, 0.8, 0.8, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352)
    header[344:348] = b"n+1\0"
    member = gzip.compress(bytes(64 << 20), 9)
    path = d / "bomb.nii.gz"
    with open(path, "wb") as handle:
        handle.write(gzip.compress(bytes(header)))
        for _ in range(16):
            handle.write(member)
    return _infer(path, d)


def _cut(suffix, keep=0.5, compress=False):
    def build(d):
        full = _itk(_ct(), d / f"full{suffix}", compress=compress)
        path = d / f"cut{suffix}"
        path.write_bytes(full.read_bytes()[: int(full.stat().st_size * keep)])
        full.unlink()
        return _infer(path, d)
    return build


def _raw_bytes(name, data):
    def build(d):
        path = d / name
        path.write_bytes(data)
        return _infer(path, d)
    return build


def _values(array, suffix=".nii.gz"):
    def build(d):
        return _infer(_itk(array, d / f"scan{suffix}", compress=True), d)
    return build


def _nan_nifti(d):
    array = _ct(np.float32)
    array[3, 4, 5] = np.nan
    return _infer(_itk(array, d / "scan.nii.gz"), d)


def _fifo(d):
    path = d / "scan.nii.gz"
    os.mkfifo(path)
    return _infer(path, d)


def _mhd_data(target_name: str, make_target=None):
    def build(d):
        inner = d / "inner"
        inner.mkdir()
        header = _itk(_ct(), inner / "scan.mhd")
        if make_target is not None:
            make_target(d, inner)
        header.write_text(header.read_text().replace("ElementDataFile = scan.raw", f"ElementDataFile = {target_name}"))
        return _infer(header, d, names="scan.mhd")
    return build


def _outside_raw(d, inner):
    (d / "outside.raw").write_bytes(np.zeros(SHAPE_KJI, np.int16).tobytes())


def _link_raw(d, inner):
    _outside_raw(d, inner)
    (inner / "link.raw").symlink_to(d / "outside.raw")


def _fifo_raw(d, inner):
    os.mkfifo(inner / "pipe.raw")


def _truncated_raw(d, inner):
    data = (inner / "scan.raw").read_bytes()
    (inner / "short.raw").write_bytes(data[: len(data) // 3])


def _nhdr_outside(d):
    inner = d / "inner"
    inner.mkdir()
    header = _itk(_ct(), inner / "scan.nhdr")
    raw_name = next(line.split(":", 1)[1].strip() for line in header.read_text().splitlines()
                    if line.startswith("data file"))
    shutil.move(inner / raw_name, d / raw_name)
    header.write_text(header.read_text().replace(f"data file: {raw_name}", f"data file: ../{raw_name}"))
    return _infer(header, d, names="scan.nhdr")


def _text_case(suffix, old, new, compress=False):
    return lambda d: _infer(_text(d, suffix, (old, new), compress=compress), d)


def _package(edit):
    def build(d):
        package = d / "pkg"
        shutil.copytree(demo_package_path(), package)
        data = json.loads((package / "pipeline.json").read_text())
        edit(data, package)
        (package / "pipeline.json").write_text(json.dumps(data))
        scan = _itk(_ct(), d / "scan.nii.gz", compress=True)
        case = _infer(scan, d, "--model", str(package), code=4, names="pipeline.json")
        case.inputs += sorted(p for p in package.iterdir() if p.is_file())
        return case
    return build


def _output_is_input(d):
    scan = _itk(_ct(), d / "scan.nii.gz", compress=True)
    return Hostile(["infer", str(scan), "-o", str(scan), "--overwrite"], "scan.nii.gz", 2, [scan], [])


def _output_hard_link(d):
    scan = _itk(_ct(), d / "scan.nii.gz", compress=True)
    os.link(scan, d / "alias.nii.gz")
    return Hostile(["infer", str(scan), "-o", str(d / "alias.nii.gz"), "--overwrite"], "alias.nii.gz", 2, [scan], [])


def _output_folder(d):
    scan = _itk(_ct(), d / "scan.nii.gz", compress=True)
    (d / "seg.nii.gz").mkdir()
    return Hostile(["infer", str(scan), "-o", str(d / "seg.nii.gz"), "--overwrite"], "seg.nii.gz", 2, [scan], [])


def _output_parent_file(d):
    scan = _itk(_ct(), d / "scan.nii.gz", compress=True)
    (d / "plain").write_text("a file")
    return Hostile(["infer", str(scan), "-o", str(d / "plain" / "seg.nii.gz")], "plain", 2, [scan, d / "plain"],
                   [d / "plain" / "seg.nii.gz"])


def _report_over_package(d):
    package = d / "pkg"
    shutil.copytree(demo_package_path(), package)
    scan = _itk(_ct(), d / "scan.nii.gz", compress=True)
    out = d / "seg.nii.gz"
    return Hostile(["infer", str(scan), "-o", str(out), "--model", str(package), "--report",
                    str(package / "pipeline.json"), "--overwrite"], "pipeline.json", 2,
                   [scan, package / "pipeline.json"], [out])


def _eval_tolerance(value):
    def build(d):
        labels = _itk(np.zeros(SHAPE_KJI, np.uint8), d / "ref.nii.gz", compress=True)
        out = d / "scores.json"
        return Hostile(["eval", str(labels), str(labels), "--tolerance-mm", value, "--json", str(out)],
                       "tolerance", 2, [labels], [out])
    return build


def _phantom(*extra, names):
    def build(d):
        out = d / "ct.nii.gz"
        return Hostile(["phantom", "--procedural", "-o", str(out), *extra], names, 2, [], [out])
    return build


def _phantom_label(array, names="label.nii.gz"):
    def build(d):
        label = _itk(array, d / "label.nii.gz", compress=True)
        out = d / "ct.nii.gz"
        return Hostile(["phantom", str(label), "-o", str(out)], names, 2, [label], [out])
    return build


def _eval_output_is_input(d):
    labels = _itk(np.zeros(SHAPE_KJI, np.uint8), d / "ref.nii.gz", compress=True)
    scores = d / "scores.json"
    scores.write_text("{}")
    return Hostile(["eval", str(d), str(d), "--json", str(scores), "--overwrite"], "scores.json", 2,
                   [labels, scores], [])


NIFTI = {  # NIfTI-1 header offsets: dim 40, datatype 70, bitpix 72, pixdim 76, vox_offset 108,
           # scl_slope/inter 112/116, qform/sform code 252/254, quatern 256.., qoffset 268.., srow 280..
    "pixdim-zero": [(80, "f", 0.0)], "pixdim-nan": [(80, "f", float("nan"))],
    "pixdim-inf": [(84, "f", float("inf"))], "spacing-1e-4": [(80, "f", 1e-4)], "spacing-1e5": [(88, "f", 1e5)],
    "fov-8-m": [(80, "f", 99.0)],
    "sform-nan": [(254, "h", 1), (280, "f", float("nan"))], "sform-inf": [(254, "h", 1), (284, "f", float("inf"))],
    "sform-offset-inf": [(254, "h", 1), (292, "f", float("inf"))],
    "sform-sheared": [(254, "h", 1), (252, "h", 0), (284, "f", 1.5)],
    "qform-nan": [(252, "h", 1), (254, "h", 0), (256, "f", float("nan"))],
    "qform-not-rotation": [(252, "h", 1), (254, "h", 0), (256, "f", 0.9), (260, "f", 0.9)],
    "qoffset-inf": [(252, "h", 1), (254, "h", 0), (268, "f", float("inf"))],
    "origin-far": [(252, "h", 1), (254, "h", 0), (268, "f", 5e7)],
    "vox-offset-nan": [(108, "f", float("nan"))], "vox-offset-small": [(108, "f", 100.0)],
    "vox-offset-beyond": [(108, "f", 1e9)],
    "scl-slope-nan": [(112, "f", float("nan"))], "scl-slope-inf": [(112, "f", float("inf"))],
    "scl-inter-inf": [(112, "f", 1.0), (116, "f", float("inf"))],
    "dim0-zero": [(40, "h", 0)], "dim0-eight": [(40, "h", 8)], "dim1-zero": [(42, "h", 0)],
    "dim1-negative": [(42, "h", -5)], "datatype-unknown": [(70, "h", 999)],
    "datatype-complex": [(70, "h", 32), (72, "h", 64)], "datatype-rgb": [(70, "h", 128), (72, "h", 24)],
    "two-d": [(40, "h", 2)], "four-d": [(40, "h", 4), (48, "h", 3)], "single-slice": [(46, "h", 1)],
    "size-over-budget": [(42, "h", 32767), (44, "h", 32767), (46, "h", 32767)],
    "sizeof-hdr-wrong": [(0, "i", 347)],
}
CASES = {
    **{f"nifti-{name}": _nifti_case(patches) for name, patches in NIFTI.items()},
    **{f"nifti-gz-{name}": _nifti_case(NIFTI[name], gz=True) for name in ("pixdim-nan", "sform-nan", "dim1-zero")},
    "gzip-bomb": _bomb,
    "gzip-promise-beyond-deflate": _nifti_case([(42, "h", 2000), (44, "h", 1000), (46, "h", 200)], gz=True),
    "truncated-nii-gz": _cut(".nii.gz", compress=True), "truncated-nii": _cut(".nii"),
    "truncated-mha": _cut(".mha"), "truncated-mha-compressed": _cut(".mha", compress=True),
    "truncated-nrrd": _cut(".nrrd"), "truncated-nrrd-gzip": _cut(".nrrd", compress=True),
    "empty-file": _raw_bytes("scan.nii.gz", b""), "text-as-nii": _raw_bytes("scan.nii", b"not an image\n" * 40),
    "random-bytes-gz": _raw_bytes("scan.nii.gz", np.random.default_rng(1).bytes(5000)),
    "gzip-of-garbage": _raw_bytes("scan.nii.gz", gzip.compress(np.random.default_rng(2).bytes(5000))),
    "corrupt-gzip-stream": lambda d: _infer(_corrupt_gzip(d), d),
    "nan-voxels-nifti": _nan_nifti,
    "inf-voxels-mha": _values(np.where(_ct() > 1400, np.inf, _ct()).astype(np.float32), ".mha"),
    "all-nan-nrrd": _values(np.full(SHAPE_KJI, np.nan, np.float32), ".nrrd"),
    "mr-like-intensities": _values(np.random.default_rng(3).uniform(0, 1200, SHAPE_KJI).astype(np.float32)),
    "constant-soft-tissue": _values(np.full(SHAPE_KJI, 40, np.int16)),
    "beyond-ct-range": _values(np.where(_ct() > 0, 30000, -1000).astype(np.int16)),
    "fifo-input": _fifo,
    "missing-file": lambda d: _infer(d / "absent.nii.gz", d),
    "dangling-symlink": lambda d: _infer(_dangling(d), d),
    "folder-without-images": lambda d: _infer(_empty_folder(d), d),
    "mhd-data-dotdot": _mhd_data("../outside.raw", _outside_raw),
    "mhd-data-absolute": _mhd_data("/etc/passwd"),
    "mhd-data-list": _mhd_data("LIST"),
    "mhd-data-pattern": _mhd_data("slice%03d.raw 1 16 1"),
    "mhd-data-symlink-out": _mhd_data("link.raw", _link_raw),
    "mhd-data-fifo": _mhd_data("pipe.raw", _fifo_raw),
    "mhd-data-truncated": _mhd_data("short.raw", _truncated_raw),
    "mhd-data-missing": _mhd_data("gone.raw"),
    "mha-ndims-huge": _text_case(".mha", b"NDims = 3", b"NDims = 99999999999"),
    "mha-dimsize-nan": _text_case(".mha", b"DimSize = 24 20 16", b"DimSize = 24 nan 16"),
    "mha-dimsize-zero": _text_case(".mha", b"DimSize = 24 20 16", b"DimSize = 24 0 16"),
    "mha-spacing-zero": _text_case(".mha", b"ElementSpacing = 2 2 3", b"ElementSpacing = 2 0 3"),
    "mha-spacing-short": _text_case(".mha", b"ElementSpacing = 2 2 3", b"ElementSpacing = 2 2"),
    "mha-sheared": _text_case(".mha", b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = 1 0.5 0 0 1 0 0 0 1"),
    "mha-element-type": _text_case(".mha", b"ElementType = MET_SHORT", b"ElementType = MET_WHAT"),
    "mha-channels": _text_case(".mha", b"ElementType = MET_SHORT", b"ElementNumberOfChannels = 3\nElementType = MET_SHORT"),
    "mha-compressed-bomb": _text_case(".mha", b"DimSize = 24 20 16", b"DimSize = 2400 2000 160", compress=True),
    "nhdr-data-dotdot": _nhdr_outside,
    "nrrd-dimension-huge": _text_case(".nrrd", b"dimension: 3", b"dimension: 99"),
    "nrrd-sizes-nan": _text_case(".nrrd", b"sizes: 24 20 16", b"sizes: 24 nan 16"),
    "nrrd-sheared": _text_case(".nrrd", b"space directions: (2,0,0) (0,2,0) (0,0,3)",
                               b"space directions: (2,1,0) (0,2,0) (0,0,3)"),
    "nrrd-encoding-unknown": _text_case(".nrrd", b"encoding: raw", b"encoding: rot13"),
    "nrrd-sizes-huge": _text_case(".nrrd", b"sizes: 24 20 16", b"sizes: 24000 20000 16000"),
    "package-model-dotdot": _package(lambda data, pkg: data["fine"].update(model="../fine.onnx")),
    "package-model-absolute": _package(lambda data, pkg: data["fine"].update(model="/etc/passwd")),
    "package-empty-hash": _package(lambda data, pkg: data["coarse"].update(sha256="")),
    "package-string-spacing": _package(lambda data, pkg: data["coarse"].update(spacing_mm="6.0")),
    "package-zero-spacing": _package(lambda data, pkg: data["fine"].update(spacing_mm=0)),
    "package-equal-window": _package(lambda data, pkg: data["coarse"]["normalization"].update(hu_window=[9, 9])),
    "package-one-element-window": _package(lambda data, pkg: data["coarse"]["normalization"].update(hu_window=[9])),
    "package-zero-divisibility": _package(lambda data, pkg: data["fine"].update(divisibility=0)),
    "package-string-components": _package(lambda data, pkg: data.setdefault("roi", {}).update(components="2")),
    "output-is-input": _output_is_input,
    "output-hard-link-to-input": _output_hard_link,
    "output-is-a-folder": _output_folder,
    "output-parent-is-a-file": _output_parent_file,
    "report-over-package-file": _report_over_package,
    "eval-output-is-input": _eval_output_is_input,
    "eval-tolerance-nan": _eval_tolerance("nan"),
    "infer-threads-negative": lambda d: _infer(_itk(_ct(), d / "scan.nii.gz"), d, "--threads", "-1", names="--threads"),
    "eval-tolerance-negative": _eval_tolerance("-1"),
    "phantom-huge-size": _phantom("--size", "100000,100000,100000", names="field of view"),
    "phantom-size-one": _phantom("--size", "1,64,64", names="phantom size"),
    "phantom-nan-spacing": _phantom("--spacing", "nan,1,1", names="--spacing"),
    "phantom-inf-spacing": _phantom("--spacing", "1,inf,1", names="--spacing"),
    "phantom-negative-seed": _phantom("--seed", "-1", names="--seed"),
    "phantom-label-is-ct": _phantom_label(_ct()),
    "phantom-label-float": _phantom_label(np.full(SHAPE_KJI, 0.5, np.float32)),
}


def _corrupt_gzip(d: Path) -> Path:
    path = _itk(_ct(), d / "scan.nii.gz", compress=True)
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def _dangling(d: Path) -> Path:
    (d / "scan.nii.gz").symlink_to(d / "nowhere.nii.gz")
    return d / "scan.nii.gz"


def _empty_folder(d: Path) -> Path:
    (d / "scans").mkdir()
    (d / "scans" / "notes.txt").write_text("no images here")
    return d / "scans"


def _digest(path: Path) -> str | None:
    if not path.is_file() or path.is_fifo():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_corpus_has_at_least_60_hostile_inputs():
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input(tmp_path, capsys, name):
    case = CASES[name](tmp_path)
    before = {p: _digest(p) for p in case.inputs}
    listing = sorted(str(p) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:   # the console entry point, as a user runs it
        main(case.args)
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert caught.value.code == case.exit_code, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert case.names in lines[0], lines[0]
    assert all(not p.exists() for p in case.outputs)
    assert {p: _digest(p) for p in case.inputs} == before
    assert sorted(str(p) for p in tmp_path.rglob("*")) == listing   # nothing new, nothing temporary
