"""Fixtures more than one test module uses."""

from __future__ import annotations

import pytest
from s3_server import S3Server


@pytest.fixture(scope="module")
def s3_server():
    """A real S3-compatible server on 127.0.0.1 (moto, its own process) for one test module."""
    server = S3Server(max_seconds=1800)
    yield server
    server.stop()
