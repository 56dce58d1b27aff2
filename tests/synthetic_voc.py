"""A synthetic Pascal VOC eval set for tests: harness/nightly/synthetic.py's (the rehearsal mirror serves the same
layout), laid out as PaddleDetection's VOCDataSet reads it (ROOT/JPEGImages, ROOT/Annotations, ROOT/test.txt,
ROOT/label_list.txt)."""

from harness.nightly.synthetic import VOC_CLASSES, Voc, synthetic_voc

__all__ = ["VOC_CLASSES", "Voc", "synthetic_voc"]
