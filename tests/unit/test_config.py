"""Settings from files (*_FILE) and the passwords a process refuses to start with."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from common.cli import EXIT_CONFIGURATION
from common.config import InvalidConfiguration
from order_service.settings import OrderSettings
from product_service.settings import ProductSettings
from user_service.settings import UserSettings

GOOD = "a-password-of-our-own"


@pytest.fixture(autouse=True)
def _no_inherited_settings(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("ADMIN_", "SERVICE_", "USER_DATABASE", "ORDER_DATABASE")):
            monkeypatch.delenv(name)
        if name.startswith("PRODUCT_DATABASE"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("variable", "settings"),
    [
        ("ADMIN_PASSWORD", UserSettings),
        ("SERVICE_PASSWORD", UserSettings),
        ("SERVICE_PASSWORD", OrderSettings),
        ("USER_DATABASE_PASSWORD", UserSettings),
        ("PRODUCT_DATABASE_PASSWORD", ProductSettings),
    ],
)
@pytest.mark.parametrize(
    "password", ["change-me-admin-password", "Change-Me", "changeme123", "password"]
)
def test_placeholders_are_refused_naming_the_variable(monkeypatch, variable, settings, password):
    monkeypatch.setenv(variable, password)
    with pytest.raises(InvalidConfiguration) as refused:
        settings()
    message = str(refused.value)
    assert variable in message and "placeholder" in message
    assert "\n" not in message and password not in message


@pytest.mark.parametrize(("length", "accepted"), [(7, False), (8, True), (128, True), (129, False)])
def test_passwords_must_be_8_to_128_characters(monkeypatch, length, accepted):
    monkeypatch.setenv("ADMIN_PASSWORD", "x" * length)
    if accepted:
        assert UserSettings().admin_password == "x" * length
        return
    with pytest.raises(InvalidConfiguration, match=r"ADMIN_PASSWORD must be 8-128 characters"):
        UserSettings()


def test_a_password_inside_a_database_url_is_held_to_the_same_rules(monkeypatch):
    monkeypatch.setenv("ORDER_DATABASE_URL", "mysql+pymysql://shop:change-me-order@db/shop_orders")
    with pytest.raises(InvalidConfiguration, match="the password in ORDER_DATABASE_URL"):
        OrderSettings()
    monkeypatch.setenv("ORDER_DATABASE_URL", "mysql+pymysql://shop:short@db/shop_orders")
    with pytest.raises(InvalidConfiguration, match="ORDER_DATABASE_URL must be 8-128"):
        OrderSettings()
    # No password (the test server's root, SQLite) is nothing to refuse.
    monkeypatch.setenv("ORDER_DATABASE_URL", "mysql+pymysql://root@127.0.0.1/shop_orders")
    assert OrderSettings().database_url.endswith("/shop_orders")


def test_any_setting_can_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "admin_password"
    secret.write_text(GOOD + "\n")
    monkeypatch.setenv("ADMIN_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("ADMIN_USERNAME", "admin")
    assert UserSettings().configured_accounts() == [("admin", GOOD, "admin")]


def test_a_file_setting_and_the_setting_itself_are_not_both_taken(monkeypatch, tmp_path):
    secret = tmp_path / "service_password"
    secret.write_text(GOOD)
    monkeypatch.setenv("SERVICE_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("SERVICE_PASSWORD", GOOD)
    with pytest.raises(InvalidConfiguration, match="SERVICE_PASSWORD or SERVICE_PASSWORD_FILE"):
        OrderSettings()


def test_an_unreadable_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("SERVICE_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(InvalidConfiguration, match="SERVICE_PASSWORD_FILE: cannot read"):
        OrderSettings()


def test_a_file_password_is_refused_like_any_other(monkeypatch, tmp_path):
    secret = tmp_path / "admin_password"
    secret.write_text("change-me-admin-password\n")
    monkeypatch.setenv("ADMIN_PASSWORD_FILE", str(secret))
    with pytest.raises(InvalidConfiguration, match="ADMIN_PASSWORD is a placeholder"):
        UserSettings()


def test_the_database_password_goes_into_the_url_escaped(monkeypatch, tmp_path):
    password = "p@ss:w/rd%?#-long"
    secret = tmp_path / "db_password"
    secret.write_text(password + "\n")
    monkeypatch.setenv("USER_DATABASE_URL", "mysql+pymysql://shop@user_db:3306/shop_users")
    monkeypatch.setenv("USER_DATABASE_PASSWORD_FILE", str(secret))
    url = sa.make_url(UserSettings().database_url)
    assert (url.username, url.password, url.host, url.database) == (
        "shop",
        password,
        "user_db",
        "shop_users",
    )


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        (UserSettings, "USER_DATABASE_URL"),
        (ProductSettings, "PRODUCT_DATABASE_URL"),
        (OrderSettings, "ORDER_DATABASE_URL"),
    ],
)
def test_a_database_url_with_its_password_is_read_from_its_file(
    monkeypatch, tmp_path, settings, variable
):
    """How the Kubernetes pods get it: a Secret's key mounted as a file, named by *_FILE."""
    secret = tmp_path / variable
    secret.write_text(f"mysql+pymysql://shop:{GOOD}@db:3306/shop\n")
    monkeypatch.setenv(f"{variable}_FILE", str(secret))
    url = sa.make_url(settings().database_url)
    assert (url.username, url.password, url.host) == ("shop", GOOD, "db")


def test_the_jwt_key_file_stays_a_path_setting(monkeypatch, tmp_path):
    """JWT_PRIVATE_KEY_FILE is a setting of its own (a path read when signing starts), not the
    file form of JWT_PRIVATE_KEY, so both never clash."""
    key = tmp_path / "jwt.pem"
    key.write_text("PEM")
    monkeypatch.setenv("JWT_PRIVATE_KEY_FILE", str(key))
    settings = UserSettings()
    assert settings.jwt_private_key is None
    assert settings.private_key_pem() == "PEM"


@pytest.mark.parametrize(
    ("service", "variable"),
    [("user_service", "ADMIN_PASSWORD"), ("order_service", "SERVICE_PASSWORD")],
)
def test_prestart_refuses_a_placeholder_with_one_line_and_no_retry_code(service, variable):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ADMIN_", "SERVICE_", "USER_DATA", "ORDER_DATA"))
    }
    done = subprocess.run(
        [sys.executable, "-m", service, "prestart"],
        env={**env, variable: "change-me-please", f"{variable[:-9]}_USERNAME": "someone"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_CONFIGURATION, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ") and variable in lines[0]
