"""Bundled model packages (data only: ONNX files, model cards, pipeline.json); no code, no torch."""
