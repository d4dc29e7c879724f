"""Password hashing: argon2id with the configured cost, a bounded number at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from common.errors import ServiceUnavailable
from user_service.settings import UserSettings


class Passwords:
    """Hashes and verifies passwords; one per process, shared by every use case."""

    def __init__(self, settings: UserSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        # Every hash allocates argon2_memory_kib: unbounded, one process's threads (and an
        # anonymous client sending logins for random usernames, which hash the decoy) could
        # take the pod past its memory limit. A full house answers 503 after a short wait
        # rather than queueing without end.
        self._slots = threading.BoundedSemaphore(settings.argon2_max_concurrent_hashes)
        self._reserved_slots = threading.BoundedSemaphore(settings.argon2_reserved_hashes)
        self._slot_wait_s = settings.argon2_hash_wait_s

    @contextmanager
    def hashing_slot(self, *, reserved: bool = False) -> Iterator[None]:
        """One of the process's hashing turns (a reserved one: see the setting);
        ServiceUnavailable if none frees up in time."""
        slots = self._reserved_slots if reserved else self._slots
        if not slots.acquire(timeout=self._slot_wait_s):
            raise ServiceUnavailable(
                "Too many passwords are being checked at once; try again shortly.",
                retry_after_s=1,
            )
        try:
            yield
        finally:
            slots.release()

    def hash(self, password: str) -> str:
        with self.hashing_slot():
            return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str, *, reserved: bool = False) -> bool:
        try:
            with self.hashing_slot(reserved=reserved):
                return bool(self._hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
