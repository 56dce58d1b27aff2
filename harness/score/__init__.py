"""Scoring predictions (COCO evaluation, a kind's own scorer) and judging a metric against its documented value.

Stage 4 of 8: imports only from core, zoo, fetch (and itself) (tests/test_layout.py)."""
