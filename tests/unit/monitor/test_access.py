"""The dashboard's access token: where it is accepted, what a request without it learns."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from otto.monitor.access import (
    MIN_TOKEN_LENGTH,
    UNAUTHORIZED_BODY,
    check_token,
    link,
    load_tls,
    new_token,
)
from otto.monitor.web import DashboardServer, MemorySource, create_app
from tests.lab.prometheus import make_tls

TOKEN = "s3cret-Token_with+odd/chars%ok"
PATHS = ["/", "/metrics", "/api/snapshot", "/api/events", "/static/app.js", "/no/such/path"]


def source() -> MemorySource:
    memory = MemorySource()
    memory.push_round(1_700_000_000.0, {"web": {"cpu.percent": 5.0}})
    return memory


def guarded(token: str = TOKEN, *, secure: bool = False) -> Starlette:
    return create_app(source(), token=token, secure=secure)


def client(app: Starlette, port: int = 8000) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=f"http://testserver:{port}"
    )


def refusal(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """What a refused request shows: status, body and headers."""
    return response.status_code, response.content, sorted(response.headers.items())


async def test_every_path_without_a_token_gets_the_same_401() -> None:
    async with client(guarded()) as http:
        answers = [refusal(await http.get(path)) for path in PATHS]
        answers.append(refusal(await http.post("/api/events", json={"label": "x"})))
        answers.append(refusal(await http.request("DELETE", "/no/such/path")))
    status, body, headers = answers[0]
    assert status == 401 and body == UNAUTHORIZED_BODY
    assert ("www-authenticate", 'Bearer realm="otto monitor"') in headers
    assert all(answer == answers[0] for answer in answers), answers


@pytest.mark.parametrize("way", ["query", "header", "cookie", "basic"])
async def test_a_wrong_token_is_refused_alike_on_known_and_unknown_paths(way: str) -> None:
    wrong = TOKEN[:-1] + "X"
    async with client(guarded()) as http:
        answers = []
        for path in ("/metrics", "/no/such/path"):
            if way == "query":
                response = await http.get(path, params={"token": wrong})
            elif way == "header":
                response = await http.get(path, headers={"Authorization": f"Bearer {wrong}"})
            elif way == "basic":
                response = await http.get(path, auth=("otto", TOKEN))
            else:
                http.cookies.set("otto_monitor_token_8000", wrong)
                response = await http.get(path)
            answers.append(refusal(response))
            assert "set-cookie" not in response.headers
    assert answers[0] == answers[1]
    assert answers[0][0] == 401


async def test_the_token_in_the_query_sets_a_cookie_that_then_suffices() -> None:
    async with client(guarded()) as http:
        first = await http.get("/", params={"token": TOKEN})
        assert first.status_code == 200
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("otto_monitor_token_8000=")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        # The page's own requests carry only the cookie.
        assert (await http.get("/api/snapshot")).json()["hosts"]["web"]["up"] is True
        assert "set-cookie" not in (await http.get("/metrics")).headers
        # Past the guard, routing is as usual.
        assert (await http.get("/no/such/path")).status_code == 404
        http.cookies.clear()
        assert (await http.get("/api/snapshot")).status_code == 401


async def test_a_bearer_header_is_accepted_without_a_cookie() -> None:
    async with client(guarded()) as http:
        response = await http.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200
    assert "otto_cpu_busy_ratio" in response.text
    assert "set-cookie" not in response.headers


async def test_the_cookie_is_per_port_and_secure_over_https() -> None:
    app = guarded(secure=True)
    async with client(app, port=9000) as http:
        response = await http.get("/", params={"token": TOKEN})
        assert "Secure" in response.headers["set-cookie"]
        assert response.headers["set-cookie"].startswith("otto_monitor_token_9000=")
    async with client(app, port=9001) as other:
        # Another monitor's cookie on the same machine is not this one's.
        other.cookies.set("otto_monitor_token_9000", TOKEN)
        assert (await other.get("/")).status_code == 401


async def test_a_post_with_the_cookie_adds_an_event() -> None:
    async with client(guarded()) as http:
        await http.get("/", params={"token": TOKEN})
        response = await http.post("/api/events", json={"label": "deploy"})
    assert response.status_code == 201


def test_tokens() -> None:
    token = new_token()
    assert len(token) >= MIN_TOKEN_LENGTH and token != new_token()
    assert check_token(TOKEN) == TOKEN
    with pytest.raises(ValueError, match="at least 16 characters") as short:
        check_token("hunter2")
    assert "hunter2" not in str(short.value)
    with pytest.raises(ValueError, match="spaces"):
        check_token("a token with spaces in it")
    assert link("http://h:1/", None) == "http://h:1/"
    assert link("http://h:1/", "a+b/c") == "http://h:1/?token=a%2Bb%2Fc"


def test_unreadable_or_wrong_tls_files_are_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match=r"nope\.pem does not exist"):
        load_tls(missing, missing)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValueError) as error:
        load_tls(junk, junk)
    message = str(error.value)
    assert "\n" not in message and "junk.pem" in message and "PEM" in message
    # A real certificate with somebody else's key.
    first, second = make_tls(tmp_path / "a"), make_tls(tmp_path / "b")
    with pytest.raises(ValueError, match="must match the certificate") as error:
        load_tls(first.cert, second.key)
    assert "\n" not in str(error.value)
    assert load_tls(first.cert, first.key) is not None


def test_a_server_beyond_loopback_makes_a_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    open_one = DashboardServer(MemorySource(), port=0)
    assert open_one.token is None and open_one.link == open_one.url
    exposed = DashboardServer(MemorySource(), host="0.0.0.0", port=0)
    assert exposed.token is not None and len(exposed.token) >= MIN_TOKEN_LENGTH
    assert exposed.link == f"{exposed.url}?token={exposed.token}"
    assert exposed.token not in exposed.url
    given = DashboardServer(MemorySource(), host="::", port=0, token=TOKEN)
    assert given.token == TOKEN
    with pytest.raises(ValueError, match="at least"):
        DashboardServer(MemorySource(), host="0.0.0.0", port=0, token="short")
    with pytest.raises(ValueError, match="both a certificate and its key"):
        DashboardServer(MemorySource(), port=0, tls_cert="cert.pem")
    assert exposed.token not in caplog.text
