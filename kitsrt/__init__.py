"""kitsrt: deployment toolkit and runtime for kidney and kidney-tumor segmentation on abdominal CT.

The runtime (``kitsrt.io``, ``kitsrt.runtime``, ``kitsrt.engines``) never imports torch; torch is
needed only by ``kitsrt.models``, ``kitsrt.training`` and ``kitsrt.export``.
"""

from kitsrt._version import __version__


def __getattr__(name):
    """``from kitsrt import Segmenter`` without importing the runtime for every ``import kitsrt``."""
    if name in ("Segmenter", "Result"):
        from kitsrt.runtime import segmenter

        return getattr(segmenter, name)
    raise AttributeError(f"module 'kitsrt' has no attribute {name!r}")
