"""Shared fixtures; helpers shared across packages are in support.py."""

from __future__ import annotations

import pytest
from support import meta_config, small_config

from streammeta.config import Config


@pytest.fixture
def small() -> Config:
    """A small engine's configuration: window 12, season 4, horizon 6."""
    return small_config()


@pytest.fixture
def meta_cfg() -> Config:
    """A configuration the outer loop learns on within seconds."""
    return meta_config()
