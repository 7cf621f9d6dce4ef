"""Network definitions (torch). Imported by training, export and the optional torch backend, never by
the runtime. ``require_torch`` gives a clear error where the export extra is missing."""

from kitsrt.errors import BackendUnavailable


def require_torch():
    """The ``torch`` module, or ``BackendUnavailable`` (exit 6) saying what to install."""
    try:
        import torch
    except ImportError:
        raise BackendUnavailable("torch is not installed; install the export extra: "
                                 "pip install 'kitsrt[export]' (torch==2.13.0 here)") from None
    return torch
