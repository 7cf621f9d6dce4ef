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


ARCHITECTURES = ("vbnet", "vnet")


def config_from_dict(data: dict):
    """The network config of an architecture dict (a card's ``architecture``, a trainer's
    ``model``): ``VBNetConfig`` (seed 002) or ``VNetConfig`` (seed 004). ValueError when unknown."""
    architecture = data.get("architecture", "vbnet")
    if architecture == "vbnet":
        from kitsrt.models.vbnet import VBNetConfig

        return VBNetConfig.from_dict(data)
    if architecture == "vnet":
        from kitsrt.models.vnet import VNetConfig

        return VNetConfig.from_dict(data)
    raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")


def build_model(config):
    """A freshly initialised torch module for ``config``."""
    if config.architecture == "vnet":
        from kitsrt.models.vnet import build_vnet

        return build_vnet(config)
    from kitsrt.models.vbnet import build_model as build_vbnet

    return build_vbnet(config)
