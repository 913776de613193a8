"""Streamer's benchmark suite: `python -m bench` (bench/__main__.py says what it runs)."""
