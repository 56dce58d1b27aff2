"""Running a model: the worker protocol and process, the eval geometry, checkpoints and weights, timing, slices.

Stage 5 of 8: imports only from core, zoo, fetch, score (and itself) (tests/test_layout.py)."""
