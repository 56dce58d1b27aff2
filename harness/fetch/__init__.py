"""Getting the bytes: the download decision, downloaders, the verified cache, archives, the source tree, the dataset.

Stage 3 of 8: imports only from core, zoo (and itself) (tests/test_layout.py)."""
