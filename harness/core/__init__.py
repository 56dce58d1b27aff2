"""Foundations every stage uses: errors and exit codes, atomic files and digests, the strict record base.

Stage 1 of 8: imports only from nothing but the standard library and third-party packages (tests/test_layout.py)."""
