"""Failed logins are counted atomically per account, and no anonymous client can lock out an
admin or service account: those are throttled per client address (shared/API.md)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from common.db import Database
from common.errors import TooManyRequests, Unauthorized
from common.migrations import upgrade_to_head
from tests.integration.users.conftest import ONE_TURN_AND_A_PAUSE_AFTER_ONE_FAILURE, user_settings
from tests.integration.users.test_user_api import assert_problem, login, register, unique
from tests.support.parallel import all_at_once
from user_service.app import MIGRATIONS_DIR
from user_service.cli import cli
from user_service.login import LoginService
from user_service.passwords import Passwords
from user_service.throttle_repository import login_throttles
from user_service.throttles import PRUNE_PER_NEW_WINDOW, Throttle, ThrottlePolicy
from user_service.tokens import TokenSigner

ATTACKER = {"REMOTE_ADDR": "203.0.113.7"}
ORDER_SERVICE_POD = {"REMOTE_ADDR": "10.1.2.3"}


def login_from(client, environ: dict[str, str], username: str, password: str = "s3cret-pass", **kw):
    return client.post(
        "/api/v1/login",
        json={"username": username, "password": password},
        environ_base=environ,
        **kw,
    )


def test_parallel_wrong_logins_verify_no_more_guesses_than_the_limit(own_user_app):
    # A hash slow enough (a few ms) that the guesses overlap, as the ~100 ms production one does.
    # A generous wait for a hashing turn: on a loaded machine a guess must still be checked
    # (401), not turned away by the hashing bound (503), which this test is not about.
    app = own_user_app(argon2_time_cost=2, argon2_memory_kib=8192, argon2_hash_wait_s=10)
    username = unique()
    register(app.test_client(), username)
    guesses = 32
    statuses = all_at_once(
        guesses, lambda n: login(app.test_client(), username, f"wrong-{n}").status_code
    )
    # login_max_failures is 3 in these tests: three guesses were checked, the rest refused.
    assert sorted(statuses) == [401] * 3 + [429] * (guesses - 3)


def test_username_and_email_are_one_account(client):
    username = unique()
    register(client, username)
    assert login(client, username, "wrong-1").status_code == 401
    assert login(client, f"{username}@example.com", "wrong-2").status_code == 401
    assert login(client, username.upper(), "wrong-3").status_code == 401
    assert_problem(login(client, f"{username}@EXAMPLE.com"), 429)
    assert_problem(login(client, username), 429)


@pytest.mark.parametrize("role", ["service", "admin"])
def test_anonymous_guesses_never_lock_out_a_service_or_admin_account(user_app, role):
    client = user_app.test_client()
    username = unique(role)
    user_app.extensions["user_service"].ensure_account(username, "s3cret-pass", role)
    for _ in range(3):
        assert login_from(client, ATTACKER, username, "guess-guess").status_code == 401
    # The attacker's address is throttled, under either name of the account...
    assert_problem(login_from(client, ATTACKER, username, "guess-guess"), 429)
    assert_problem(login_from(client, ATTACKER, username), 429)
    assert_problem(login_from(client, ATTACKER, f"{username}@accounts.shop.invalid"), 429)
    # ...and naming another address in a header it sends changes nothing (no trusted proxy)...
    spoofed = login_from(client, ATTACKER, username, headers={"X-Forwarded-For": "10.1.2.3"})
    assert_problem(spoofed, 429)
    # ...while the account itself logs in from its own address as often as it needs.
    for _ in range(5):
        assert login_from(client, ORDER_SERVICE_POD, username).status_code == 200


def test_an_ipv6_client_is_throttled_by_its_64_prefix(user_app):
    """One IPv6 host is handed a whole /64: counting single addresses would give it 2^64 tries."""
    client = user_app.test_client()
    username = unique("svc")
    user_app.extensions["user_service"].ensure_account(username, "s3cret-pass", "service")
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8::ffff:3"):
        assert login_from(client, {"REMOTE_ADDR": host}, username, "guess").status_code == 401
    assert_problem(login_from(client, {"REMOTE_ADDR": "2001:db8::4"}, username), 429)
    assert login_from(client, {"REMOTE_ADDR": "2001:db8:0:1::4"}, username).status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_address_counts(own_user_app):
    app = own_user_app(trusted_proxy_hops=1)
    client = app.test_client()
    username = unique("svc")
    app.extensions["user_service"].ensure_account(username, "s3cret-pass", "service")
    ingress = {"REMOTE_ADDR": "10.0.0.1"}
    attacker = {"X-Forwarded-For": "198.51.100.9"}
    for _ in range(3):
        login_from(client, ingress, username, "guess", headers=attacker)
    assert_problem(login_from(client, ingress, username, headers=attacker), 429)
    # The proxy appends the address it saw; what the client wrote in front is not trusted.
    forged = {"X-Forwarded-For": "10.1.2.3, 198.51.100.9"}
    assert_problem(login_from(client, ingress, username, headers=forged), 429)
    pod = {"X-Forwarded-For": "10.1.2.3"}
    assert login_from(client, ingress, username, headers=pod).status_code == 200


def test_a_customer_account_is_still_locked_whatever_the_address(client):
    username = unique()
    register(client, username)
    for number in range(3):
        environ = {"REMOTE_ADDR": f"198.51.100.{number}"}
        assert login_from(client, environ, username, "wrong").status_code == 401
    assert_problem(login_from(client, {"REMOTE_ADDR": "198.51.100.99"}, username), 429)


def logins_on_a_clock(
    url: str, start: datetime, **overrides: object
) -> tuple[Database, LoginService, list[datetime]]:
    """A LoginService on a migrated database at `url`, on a clock the test moves (`clock[0]`)."""
    upgrade_to_head(url, MIGRATIONS_DIR)
    settings = user_settings(url, **overrides)
    db = Database.from_url(url)
    clock = [start]
    service = LoginService(
        db,
        settings,
        Passwords(settings),
        TokenSigner.from_settings(settings),
        clock=lambda: clock[0],
    )
    return db, service, clock


class TestWindows:
    """On a clock of the test's own: a window ends and the count starts again, and expired
    throttles (each random username opens one) do not pile up without end."""

    START = datetime(2026, 1, 1, tzinfo=UTC)

    @pytest.fixture
    def fresh(self, databases):
        url = databases.create("throttles")
        db, service, clock = logins_on_a_clock(url, self.START)  # a 60 s window, 3 attempts
        yield url, db, service, clock
        db.dispose()

    @staticmethod
    def fail_with_new_names(service: LoginService, count: int) -> None:
        for _ in range(count):
            with pytest.raises(Unauthorized):
                service.login(unique(), "guess-guess", "203.0.113.7")

    @staticmethod
    def rows(db: Database) -> int:
        with db.transaction() as connection:
            return connection.execute(
                sa.select(sa.func.count()).select_from(login_throttles)
            ).scalar_one()

    def test_a_lock_out_ends_with_its_window_and_the_count_starts_again(self, fresh):
        _url, _db, service, clock = fresh
        name = unique()
        for _ in range(3):
            with pytest.raises(Unauthorized):
                service.login(name, "guess-guess", None)
        with pytest.raises(TooManyRequests) as locked:
            service.login(name, "guess-guess", None)
        assert locked.value.headers["Retry-After"] == "60"
        clock[0] += timedelta(seconds=60)  # the window has ended: a new one opens at 1
        for _ in range(3):
            with pytest.raises(Unauthorized):
                service.login(name, "guess-guess", None)
        with pytest.raises(TooManyRequests):
            service.login(name, "guess-guess", None)

    def test_each_new_window_deletes_a_batch_of_expired_ones(self, fresh):
        _url, db, service, clock = fresh
        self.fail_with_new_names(service, 25)
        assert self.rows(db) == 25  # all still open: none may go
        clock[0] += timedelta(seconds=61)
        self.fail_with_new_names(service, 1)
        assert self.rows(db) == 25 - PRUNE_PER_NEW_WINDOW + 1
        self.fail_with_new_names(service, 2)
        assert self.rows(db) == 3  # the backlog is gone; the three open windows stay

    def test_an_endless_stream_of_new_names_keeps_the_table_bounded(self, fresh):
        _url, db, service, clock = fresh
        sizes = []
        for _ in range(4):
            self.fail_with_new_names(service, 20)
            sizes.append(self.rows(db))
            clock[0] += timedelta(seconds=61)
        # Each window's first two names clear the last window's 20: only the open ones stay.
        assert sizes == [20, 20, 20, 20]

    def test_the_cli_deletes_every_expired_throttle(self, fresh, monkeypatch):
        url, db, service, clock = fresh
        clock[0] = datetime.now(UTC) - timedelta(days=1)
        self.fail_with_new_names(service, 30)
        clock[0] = datetime.now(UTC)
        self.fail_with_new_names(service, 1)  # prunes a batch, and stays: its window is open
        monkeypatch.setenv("USER_DATABASE_URL", url)
        result = CliRunner().invoke(cli, ["prune-login-throttles"])
        assert result.exit_code == 0, result.output
        assert f"deleted {30 - PRUNE_PER_NEW_WINDOW} expired" in result.output
        assert self.rows(db) == 1


class TestSlowDown:
    """Failures slow an account down before they lock it out (shared/API.md): after
    login_slowdown_after of them each further attempt waits a doubling pause, and one that
    comes sooner is refused without being counted or checked."""

    START = datetime(2026, 1, 1, tzinfo=UTC)

    @pytest.fixture
    def slowed(self, databases):
        # A 60 s window; pauses of 2, 4, 8 s after the first, second, third failure; the
        # fourth locks the account until the window ends.
        db, service, clock = logins_on_a_clock(
            databases.create("slowdown"),
            self.START,
            login_max_failures=4,
            login_slowdown_after=1,
            login_slowdown_first_pause_s=2,
        )
        yield db, service, clock
        db.dispose()

    @staticmethod
    def attempts(db: Database) -> list[int]:
        with db.transaction() as connection:
            return list(connection.scalars(sa.select(login_throttles.c.attempts)))

    @staticmethod
    def refused_for(service: LoginService, name: str, password: str = "guess-guess") -> str:
        with pytest.raises(TooManyRequests) as refused:
            service.login(name, password, None)
        return refused.value.headers["Retry-After"]

    def test_each_failure_doubles_the_pause_and_the_limit_locks_until_the_window_ends(self, slowed):
        db, service, clock = slowed
        name = unique()
        for pause in (2, 4, 8):
            with pytest.raises(Unauthorized):
                service.login(name, "guess-guess", None)
            assert self.refused_for(service, name) == str(pause)
            clock[0] += timedelta(seconds=pause - 1)
            assert self.refused_for(service, name) == "1"
            clock[0] += timedelta(seconds=1)
        assert self.attempts(db) == [3], "the refused attempts were not counted"
        with pytest.raises(Unauthorized):
            service.login(name, "guess-guess", None)  # the fourth: locked until the window ends
        elapsed = (clock[0] - self.START).total_seconds()
        assert self.refused_for(service, name) == str(int(60 - elapsed))
        clock[0] = self.START + timedelta(seconds=59)
        assert self.refused_for(service, name) == "1"
        clock[0] = self.START + timedelta(seconds=60)
        with pytest.raises(Unauthorized):
            service.login(name, "guess-guess", None)  # a new window: its first failure
        assert self.attempts(db) == [1]


def test_a_pause_refuses_even_the_right_password_and_then_lets_it_in(own_user_app):
    """No oracle inside a pause: the right password is refused unchecked like any other."""
    app = own_user_app(login_slowdown_after=1, login_slowdown_first_pause_s=0.5)
    client = app.test_client()
    username = unique()
    register(client, username)
    assert login(client, username, "wrong-password").status_code == 401
    refused = login(client, username)
    assert_problem(refused, 429)
    assert refused.headers["Retry-After"] == "1"
    deadline = time.monotonic() + 10
    while (answer := login(client, username)).status_code == 429:
        assert time.monotonic() < deadline, "the pause never ended"
        time.sleep(0.1)
    assert answer.status_code == 200
    # The success cleared the throttle: a failure now is the window's first, with no pause.
    assert login(client, username, "wrong-password").status_code == 401


def test_parallel_guesses_inside_a_pause_are_all_refused(own_user_app):
    app = own_user_app(
        login_slowdown_after=1,
        login_slowdown_first_pause_s=60,
        argon2_time_cost=2,
        argon2_memory_kib=8192,
        argon2_hash_wait_s=10,
    )
    username = unique()
    register(app.test_client(), username)
    guesses = 16
    statuses = all_at_once(
        guesses, lambda n: login(app.test_client(), username, f"wrong-{n}").status_code
    )
    # The first failure starts a 60 s pause: exactly one guess was checked.
    assert sorted(statuses) == [401] + [429] * (guesses - 1)


def test_an_attempt_no_hashing_turn_was_free_for_leaves_no_pause(own_user_app):
    app = own_user_app(**ONE_TURN_AND_A_PAUSE_AFTER_ONE_FAILURE)
    client = app.test_client()
    username = unique()
    register(client, username)
    with app.extensions["passwords"].hashing_slot():
        assert_problem(login(client, username, "wrong-password"), 503)
    # Had the unchecked attempt counted, this one would wait 60 s.
    assert login(client, username, "wrong-password").status_code == 401
    assert_problem(login(client, username), 429)


class TestRefund:
    """A refund takes back exactly the attempt whose hash never ran, on a clock of the test's
    own: never a later attempt's pause, never a count of a window opened since."""

    START = datetime(2026, 1, 1, tzinfo=UTC)
    POLICY = ThrottlePolicy(
        max_attempts=5,
        window=timedelta(seconds=60),
        slowdown_after=1,
        first_pause_s=2,
        counted="failed logins",
    )

    @pytest.fixture
    def throttle(self, databases):
        url = databases.create("refunds")
        upgrade_to_head(url, MIGRATIONS_DIR)
        db = Database.from_url(url)
        yield db, Throttle(db, self.POLICY)
        db.dispose()

    @staticmethod
    def row(db: Database, key: str) -> tuple[int, datetime | None]:
        with db.transaction() as connection:
            found = connection.execute(
                sa.select(login_throttles.c.attempts, login_throttles.c.next_attempt_at).where(
                    login_throttles.c.throttle_key == key
                )
            ).one()
        return found.attempts, found.next_attempt_at

    def test_a_late_refund_keeps_the_pause_of_an_attempt_let_in_since(self, throttle):
        db, throttle = throttle
        key = unique()
        unchecked = throttle.charge(key, self.START)  # its hash will not run; a 2 s pause
        later = self.START + timedelta(seconds=2)
        throttle.charge(key, later)  # let in after that pause: a 4 s pause of its own
        throttle.refund(unchecked)
        assert self.row(db, key) == (1, later + timedelta(seconds=4))

    def test_a_refund_leaves_a_window_opened_since_alone(self, throttle):
        db, throttle = throttle
        key = unique()
        unchecked = throttle.charge(key, self.START)
        next_window = self.START + timedelta(seconds=61)
        throttle.charge(key, next_window)
        throttle.refund(unchecked)
        assert self.row(db, key) == (1, next_window + timedelta(seconds=2))

    def test_a_refund_of_the_last_attempt_takes_back_its_count_and_pause(self, throttle):
        db, throttle = throttle
        key = unique()
        throttle.charge(key, self.START)
        later = self.START + timedelta(seconds=2)
        unchecked = throttle.charge(key, later)
        throttle.refund(unchecked)
        assert self.row(db, key) == (1, None)
