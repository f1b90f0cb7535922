"""Errors are shown with every registered secret masked, whatever text they carry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otto import redact
from otto.errors import AuthenticationError, ConnectError, ExpectTimeout, OttoError
from otto.hosts.remote import Credentials, RemoteHost

PASSWORD = "Rem0te-Pa55-word"
BECOME = "Bec0me-Pa55-word"


@pytest.fixture(autouse=True)
def _forget_registered() -> Iterator[None]:
    """Hosts register their secrets for good; other tests must not see these."""
    before = set(redact.secrets())
    yield
    for secret in set(redact.secrets()) - before:
        while secret in redact.secrets():
            redact.forget(secret)


def test_an_error_with_a_registered_secret_shows_it_masked() -> None:
    redact.register("Reg1stered-secret")
    try:
        error = OttoError("the server said: Reg1stered-secret is wrong")
        assert str(error) == "the server said: *** is wrong"
        assert repr(error) == "OttoError('the server said: *** is wrong')"
    finally:
        redact.forget("Reg1stered-secret")


def test_a_remote_hosts_passwords_are_masked_in_errors_about_it() -> None:
    RemoteHost("192.0.2.1", user="u", password=PASSWORD, become_password=BECOME)
    error = AuthenticationError("h1", f"login refused; said: {PASSWORD} / {BECOME}", step="login")
    assert PASSWORD not in str(error) and BECOME not in str(error)
    assert PASSWORD not in repr(error) and BECOME not in repr(error)
    assert error.reason == "login refused; said: *** / ***"
    assert error.step == "login"


def test_credentials_register_their_password() -> None:
    Credentials("Cred-Pa55-word")
    assert "Cred-Pa55-word" in redact.secrets()
    assert repr(Credentials("Cred-Pa55-word")) == "Credentials(password=***)"


def test_a_timeout_shows_what_was_received_masked() -> None:
    RemoteHost("192.0.2.1", user="u", password=PASSWORD)
    error = ExpectTimeout("h1", "[$#] $", 1.0, f"echo {PASSWORD}\n")
    assert PASSWORD not in str(error)
    assert "echo ***" in str(error)


def test_a_connect_error_keeps_its_step() -> None:
    assert ConnectError("h", "x").step == ""
    with pytest.raises(ConnectError) as info:
        raise ConnectError("h", "no SSH handshake", step="SSH handshake")
    assert info.value.step == "SSH handshake"
