"""The one exception type kitsrt raises for problems a user can fix.

Library code raises these with an actionable message; only the CLI turns them into a one-line
error and an exit code. Anything else that escapes is a bug in kitsrt.
"""

from __future__ import annotations


class KitsrtError(Exception):
    """A problem with the user's input, model or environment. ``exit_code`` is what the CLI returns."""

    exit_code = 2


class InputError(KitsrtError):
    """A scan, label map or output path that cannot be used as given."""

    exit_code = 2


class NoKidneyFound(KitsrtError):
    """The coarse stage found no kidney; an empty label map was still written."""

    exit_code = 3


class ModelPackageError(KitsrtError):
    """A model package or checkpoint that is missing, corrupt or inconsistent."""

    exit_code = 4


class AccuracyGateError(KitsrtError):
    """A numerical check (export parity, precision gate) failed."""

    exit_code = 5


class BackendUnavailable(KitsrtError):
    """The requested backend cannot run here (library or device missing)."""

    exit_code = 6


class QualityWarnings(KitsrtError):
    """``--strict``: the result carries quality warnings (implausible findings, a demo model, input
    unlike the training data). All outputs, warnings included, were still written."""

    exit_code = 7


class ResourceLimitError(KitsrtError):
    """A case ran past its time limit or would not fit the memory budget; it was stopped cleanly
    (nothing written for it) and a batch goes on with the next case."""

    exit_code = 8


EXIT_CODES = {
    0: "success",
    1: "internal error: a bug in kitsrt, please report it with the traceback",
    InputError.exit_code: "bad input: unreadable scan, wrong dimensionality, existing output, bad option",
    NoKidneyFound.exit_code: "no kidney found: an empty label map and report were written",
    ModelPackageError.exit_code: "bad model package: model package or checkpoint missing, corrupt or inconsistent",
    AccuracyGateError.exit_code: "numerical check failed: export parity or precision gate",
    BackendUnavailable.exit_code: "backend unavailable: library or device missing on this machine",
    QualityWarnings.exit_code: "quality warnings with --strict: outputs written, but the report's warnings say "
                               "the result must not be trusted blindly",
    ResourceLimitError.exit_code: "resource limit: a case exceeded --time-limit-s or --memory-budget-gb",
}
