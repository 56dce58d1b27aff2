"""What the zoo is: the kinds of predictions, the zoo file (manifest) and its lock, PaddleDetection's README tables.

Stage 2 of 8: imports only from core (and itself) (tests/test_layout.py)."""
