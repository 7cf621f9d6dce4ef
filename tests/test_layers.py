"""The architecture is enforced: import-linter's contracts (pyproject.toml ``[tool.importlinter]``)
hold, and fail on an upward import; every kitsrt module imports with torch blocked, and only
kitsrt.models / kitsrt.export / kitsrt.training may need it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
needs_import_linter = pytest.mark.skipif(not Path(LINT_IMPORTS).exists(),
                                         reason="import-linter is not installed (the dev extra)")
TORCH_PACKAGES = ("kitsrt.models", "kitsrt.export", "kitsrt.training")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT_IMPORTS, "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root,
                          capture_output=True, encoding="utf-8", errors="replace",
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


@needs_import_linter
def test_import_contracts_hold():
    done = _lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


@needs_import_linter
@pytest.mark.parametrize("module, upward", [
    ("kitsrt/io/files.py", "import kitsrt.runtime.segmenter"),  # io reaching up to the runtime
    ("kitsrt/runtime/postprocess.py", "from kitsrt.engines import create_backend"),  # postprocessing -> backend
    ("kitsrt/runtime/preprocess.py", "import torch"),  # torch in the runtime
])
def test_an_upward_import_breaks_a_contract(tmp_path, module, upward):
    shutil.copytree(REPO / "kitsrt", tmp_path / "kitsrt", ignore=shutil.ignore_patterns("*.onnx", "*.npz", "__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{upward}  # noqa\n")
    done = _lint(tmp_path)
    assert done.returncode != 0 and "BROKEN" in done.stdout
    assert module.removesuffix(".py").replace("/", ".") in done.stdout


BLOCKED_IMPORT = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "monai"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    import kitsrt
    failed = []
    for info in pkgutil.walk_packages(kitsrt.__path__, "kitsrt."):
        try:
            importlib.import_module(info.name)
        except ImportError as exc:
            failed.append(f"{info.name}: {exc}")
    import kitsrt.cli  # the CLI entry point, with every command registered
    print("FAILED=" + "|".join(failed))
    print("TORCH=" + str(any(m.split(".")[0] in ("torch", "monai") for m in sys.modules)))
""")


def test_every_module_imports_with_torch_blocked():
    done = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT], capture_output=True, cwd=REPO,
                          encoding="utf-8", errors="replace",
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    failed = [entry for entry in lines["FAILED"].split("|") if entry]
    assert lines["TORCH"] == "False"
    outside = [entry for entry in failed if not entry.startswith(TORCH_PACKAGES)]
    assert not outside, outside
    assert all("blocked" in entry for entry in failed), failed  # nothing else missing
