"""The reference trainer (torch). ``require_torch`` gives a clear error where the extra is missing."""

from kitsrt.errors import BackendUnavailable


def require_torch():
    try:
        import torch
    except ImportError:
        raise BackendUnavailable("torch is not installed; install the export extra: "
                                 "pip install 'kitsrt[export]' (torch==2.13.0 here)") from None
    return torch
