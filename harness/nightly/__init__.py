"""Putting it together: one model's pipeline (verification), the run's queue, the plan, the rehearsal, the audit.

Stage 8 of 8: imports only from core, zoo, fetch, score, model, records, publish (and itself) (tests/test_layout.py)."""
