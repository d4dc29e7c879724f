"""The settings that bound every wait refuse combinations that would defeat each other."""

from __future__ import annotations

import pytest

from common.config import CommonSettings


def test_the_database_read_timeout_must_outlast_the_lock_wait():
    with pytest.raises(ValueError, match="DB_READ_TIMEOUT_S must be longer"):
        CommonSettings(db_read_timeout_s=5, db_lock_wait_timeout_s=5)
    assert CommonSettings(db_read_timeout_s=6, db_lock_wait_timeout_s=5).db_read_timeout_s == 6


def test_stale_keys_must_be_kept_longer_than_a_refresh():
    with pytest.raises(ValueError, match="JWKS_MAX_STALE_S must be longer"):
        CommonSettings(jwks_cache_seconds=300, jwks_max_stale_s=300)
