"""What people read: one view of a night (view), rendered as the markdown report, JUnit and CSV, the plots, the
static site and GitHub issues (notify); the model index.

Stage 7 of 8: imports only from core, zoo, fetch, score, model, records (and itself) (tests/test_layout.py)."""
