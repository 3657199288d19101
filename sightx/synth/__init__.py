"""Synthetic EyePACS generator."""
