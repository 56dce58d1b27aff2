"""What a run leaves: the typed result record, run.json, the history of nights, one writer per model directory;
and the rules read from them: what is new in a night, slowdowns, alerts (judgement asks them all once).

Stage 6 of 8: imports only from core, zoo, fetch, score, model (and itself) (tests/test_layout.py)."""
