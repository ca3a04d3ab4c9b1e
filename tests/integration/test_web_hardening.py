"""
The web API against the attacks of security issue 11, over real sockets to a running
daemon: parameters smuggled in a body, untrusted clients filling every connection slot,
endless keep-alive connections, PIN guessing spread over many addresses, cross-origin
requests from a browser, and plain HTTP left on.

The daemon trusts 127.0.0.1 only; other 127.0.0.x source addresses act as other hosts.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl

import pytest

from tests.integration import hostile
from tests.integration.daemon import Daemon, write_config
from tests.integration.e2e import wait_for

CALL = "/callcontroller/user1/user2"
GET_HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def daemon(tmp_path):
    with Daemon(write_config(tmp_path, http_trusted="127.0.0.1")) as running:
        yield running


def request(method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes = b"", host: str = "x") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close",
             f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def basic(user: str, pin: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pin}".encode()).decode()}


def listed_calls(daemon) -> list[dict]:
    """Every call the daemon holds (GET /calls as the trusted host, JSON)."""
    answer = hostile.raw_http(daemon.config.http.https, request(
        "GET", "/calls", {"Accept": "application/json"}))
    assert hostile.http_status(answer) == 200, answer[:200]
    return json.loads(answer.partition(b"\r\n\r\n")[2])["calls"]


def send(daemon, data: bytes, source: str = "127.0.0.1") -> bytes:
    return hostile.raw_http(daemon.config.http.https, data, source=source)


# item 4: parameters from the query string only


FORM = b"autoAnswer=true&subject=x&agent=user3"
MULTIPART = b"".join(b'--b\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
                     % pair for pair in ((b"autoAnswer", b"true"), (b"subject", b"x"))) \
    + b"--b--\r\n"


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/x-www-form-urlencoded", FORM),
    ("multipart/form-data; boundary=b", MULTIPART),
    ("text/plain", FORM),
], ids=["form", "multipart", "text"])
def test_a_body_with_parameters_is_refused_and_places_no_call(daemon, content_type, body):
    for source, headers in (("127.0.0.1", {}), ("127.0.0.2", basic("user1", "123"))):
        answer = send(daemon, request("POST", CALL, {"Content-Type": content_type, **headers},
                                      body), source=source)
        assert hostile.http_status(answer) == 415, answer[:300]
        assert b"a request body is not accepted" in answer
    assert listed_calls(daemon) == []
    # an empty form body (curl -d '') is fine: the query's parameters are used
    answer = send(daemon, request("POST", CALL + "?subject=hello",
                                  {"Content-Type": "application/x-www-form-urlencoded"}))
    assert hostile.http_status(answer) == 200, answer[:300]
    assert len(listed_calls(daemon)) == 1


# item 5: connection slots


def _keep_alive(port: int, source: str) -> tuple[socket.socket, int | None]:
    """A plain-HTTP connection from C{source} that made one request and stays open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                    source_address=(source, 0))
    sock.sendall(GET_HEALTH)
    received = b""
    while not hostile._complete(received):
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return sock, hostile.http_status(received)


def test_untrusted_clients_cannot_take_the_trusted_hosts_slots(daemon):
    from sipxcc.web.limits import MAX_CONNECTIONS, MAX_CONNECTIONS_PER_HOST, TRUSTED_RESERVE
    port = daemon.config.http.http
    held: list[socket.socket] = []
    statuses: list[int | None] = []
    try:
        # 10 addresses x 100 kept-alive connections: the whole connection total
        for n in range(MAX_CONNECTIONS // MAX_CONNECTIONS_PER_HOST):
            for _ in range(MAX_CONNECTIONS_PER_HOST):
                sock, status = _keep_alive(port, f"127.0.0.{n + 11}")
                held.append(sock)
                statuses.append(status)
        assert statuses.count(200) == MAX_CONNECTIONS - TRUSTED_RESERVE
        assert statuses.count(503) == TRUSTED_RESERVE
        # an 11th untrusted host finds the untrusted share full ...
        refused = hostile.raw_http(port, GET_HEALTH, secure=False, source="127.0.0.30")
        assert hostile.http_status(refused) == 503
        # ... and the trusted host is served, over HTTPS and plain HTTP
        assert daemon.health() == 200
        assert daemon.get("/health", secure=False)[0] == 200
        answer = send(daemon, request("GET", CALL))
        assert hostile.http_status(answer) == 200
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: hostile.http_status(hostile.raw_http(
        port, GET_HEALTH, secure=False, source="127.0.0.30")) == 200, timeout=10)


def test_a_keep_alive_connection_closes_after_its_request_cap(daemon):
    from sipxcc.web.limits import MAX_REQUESTS_PER_CONNECTION
    context = hostile.tls_context()
    raw = socket.create_connection(("127.0.0.1", daemon.config.http.https), timeout=10,
                                   source_address=("127.0.0.2", 0))
    with context.wrap_socket(raw) as sock:
        sock.sendall(GET_HEALTH * (MAX_REQUESTS_PER_CONNECTION + 5))  # pipelined
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ssl.SSLError, ConnectionResetError, TimeoutError):
                break  # a timeout: the daemon kept the connection open
            if not chunk:
                break  # the daemon closed the connection
            received += chunk
    responses = received.split(b"HTTP/1.1 ")[1:]
    assert len(responses) == MAX_REQUESTS_PER_CONNECTION
    assert all(r.startswith(b"200 ") for r in responses)
    assert b"Connection: close" in responses[-1]
    assert not any(b"Connection: close" in r for r in responses[:-1])


# item 9: PIN guessing per account


def test_wrong_pins_from_several_addresses_lock_that_account_only(daemon):
    from sipxcc.web.auth import ACCOUNT_FAILURE_LIMIT, FAILURE_LIMIT
    for n in range(ACCOUNT_FAILURE_LIMIT):
        source = f"127.0.0.{n // (FAILURE_LIMIT - 1) + 2}"  # below each address's limit
        answer = send(daemon, request("GET", CALL, basic("user1", f"{n:06d}")), source)
        assert hostile.http_status(answer) == 401, (n, answer[:200])
    # the right PIN, from an address that never failed: the account is locked
    locked = send(daemon, request("GET", CALL, basic("user1", "123")), "127.0.0.9")
    assert hostile.http_status(locked) == 429
    assert b"Retry-After: " in locked
    # another account is served from that address, and the trusted host as ever
    other = send(daemon, request("GET", "/callcontroller/user2/user1", basic("user2", "123")),
                 "127.0.0.9")
    assert hostile.http_status(other) == 200
    assert hostile.http_status(send(daemon, request("GET", CALL))) == 200
    log = daemon.log_text()
    assert log.count("blocking account user1@sipx.test") == 1
    assert "000007" not in log and "MTIz" not in log


# item 12: cross-origin requests


def test_a_cross_origin_post_is_403_and_same_or_no_origin_is_served(daemon):
    port = daemon.config.http.https
    own = f"127.0.0.1:{port}"
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}):
        answer = send(daemon, request("POST", CALL, headers, host=own))
        assert hostile.http_status(answer) == 403, (headers, answer[:200])
        answer = send(daemon, request("DELETE", CALL, headers, host=own))
        assert hostile.http_status(answer) == 403, (headers, answer[:200])
    assert listed_calls(daemon) == []
    same = send(daemon, request("POST", CALL, {"Origin": f"https://{own}"}, host=own))
    assert hostile.http_status(same) == 200, same[:200]
    none = send(daemon, request("POST", "/callcontroller/user1/user4", host=own))
    assert hostile.http_status(none) == 200, none[:200]
    assert len(listed_calls(daemon)) == 2


# item 4: plain HTTP


def test_plain_http_is_off_by_default_and_warned_about_when_on(tmp_path, daemon):
    assert "plain HTTP is enabled on 127.0.0.1:" in daemon.log_text()
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    with Daemon(write_config(quiet, http_http=None)) as default:
        assert default.config.http.http == 0
        assert "plain HTTP is enabled" not in default.log_text()
