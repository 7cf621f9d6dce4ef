"""kitsrt as a DICOM node: receive a CT series (C-STORE), segment it, send back a DICOM SEG.

Needs the ``dicom`` extra (pynetdicom, pydicom, highdicom), imported lazily by ``kitsrt.serve.node``.
"""
