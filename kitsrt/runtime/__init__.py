"""The torch-free runtime: pipeline spec, preprocessing, the cascade and the Segmenter API."""
