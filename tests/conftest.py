"""Shared fixtures; helpers shared across packages are in support.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from support import S3_ENV, meta_config, s3_bucket, s3_server, small_config

from streammeta.config import Config


@pytest.fixture
def small() -> Config:
    """A small engine's configuration: window 12, season 4, horizon 6."""
    return small_config()


@pytest.fixture
def meta_cfg() -> Config:
    """A configuration the outer loop learns on within seconds."""
    return meta_config()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One moto S3 server for the session, its credentials in the environment."""
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    try:
        with s3_server() as endpoint:
            yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_url(s3_endpoint: str) -> str:
    """A fresh bucket on the test server: ``s3://<bucket>/checkpoints``."""
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3_bucket(s3_endpoint, bucket)
    return f"s3://{bucket}/checkpoints"
