"""What people read: the markdown report, JUnit, CSV, plots, the static site, the model index.

Stage 7 of 8: imports only from core, zoo, fetch, score, model, records (and itself) (tests/test_layout.py)."""
