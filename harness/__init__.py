"""res2net-zoo harness: prove that PaddleDetection's published Res2Net numbers hold."""

__version__ = "0.1.0"
