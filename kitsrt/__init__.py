"""kitsrt: deployment toolkit and runtime for kidney and kidney-tumor segmentation on abdominal CT.

The runtime (``kitsrt.io``, ``kitsrt.runtime``, ``kitsrt.engines``) never imports torch; torch is
needed only by ``kitsrt.models``, ``kitsrt.training`` and ``kitsrt.export``.
"""

__version__ = "0.1.0"
