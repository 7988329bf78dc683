"""Shared helpers: one-line user errors, atomic checkpoints, device selection."""
