"""Shared fixtures; helpers shared across packages are in support.py."""
