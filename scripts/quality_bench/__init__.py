"""The quality benchmark's modules (``scripts/quality.py`` is the entry point)."""
