"""Streamer runtime."""
