"""What a run leaves: the typed result record, run.json, the history of nights, one writer per model directory.

Stage 6 of 8: imports only from core, zoo, fetch, score, model (and itself) (tests/test_layout.py)."""
