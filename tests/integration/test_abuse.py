"""
The daemon under abuse, end to end (issue 8): a flood of junk and stray SIP on UDP and
TCP, hostile HTTP (oversized, slow, half-open TLS, too many connections, malformed
Digest), requests forged into a live dialog, and hostile text in what phones report.
Every answer is an RFC answer, a clean 4xx or a close; the daemon keeps serving.
"""

from __future__ import annotations

import json
import socket
import ssl
import time

import pytest
from lxml import etree

from tests.integration import hostile
from tests.integration.daemon import Daemon, write_config
from tests.integration.e2e import NS, curl, status_lines, wait_for

SIP_ANSWERS = {200, 400, 403, 405, 481, 482, 483, 501}


@pytest.fixture
def daemon(tmp_path):
    with Daemon(write_config(tmp_path)) as running:
        yield running


def flood_datagrams(port: int, rounds: int) -> list[tuple[bytes, set[int] | None]]:
    """Junk and stray requests, each with the answers it may get (None: must be dropped)."""
    datagrams = []
    for n in range(rounds):
        shared = hostile.secrets.token_hex(6)
        datagrams += [
            (hostile.secrets.token_bytes(n % 200 + 1), None),
            (b"\x00\xff" * 50 + b"\r\n\r\n", None),
            (hostile.sip_request("BYE", port, to_tag="nosuch"), {481}),
            (hostile.sip_request("NOTIFY", port, to_tag="t", extra="Event: refer"), {481}),
            (hostile.sip_request("BYE", port), {481}),
            (hostile.sip_request("OPTIONS", port), {200}),
            (hostile.sip_request("INVITE", port), {405}),
            (hostile.sip_request("FROBNICATE", port), {501}),
            (hostile.sip_request("CANCEL", port), {481}),
            (hostile.sip_request("MESSAGE", port, max_forwards=0), {483}),
            (hostile.sip_request("SUBSCRIBE", port, call_id=shared, from_tag=shared), {405}),
            # the same request by a second path: §8.2.2.2 merged request
            (hostile.sip_request("SUBSCRIBE", port, call_id=shared, from_tag=shared), {482}),
            (hostile.sip_request("BYE", port, extra="CSeq: 1 BYE"), {400}),
            (hostile.sip_request("INVITE", port).replace(b"Content-Length: 0",
                                                         b"Content-Length: 999"), {400}),
            (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\n"
             b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\n"
             b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", None),
        ]
    return datagrams


def _call_id(message: bytes) -> str | None:
    for line in message.split(b"\r\n"):
        if line.lower().startswith((b"call-id:", b"i:")):
            return line.split(b":", 1)[1].strip().decode("ascii", "replace")
    return None


def test_sip_udp_flood_is_answered_per_rfc_and_memory_stays_bounded(daemon):
    pid = daemon.process.pid
    client = hostile.UDPClient(daemon.sip_port)
    try:
        assert hostile.status_of(client.request(
            hostile.sip_request("OPTIONS", daemon.sip_port))) == 200
        client.received.clear()
        baseline = hostile.rss_kib(pid)
        allowed_by_call: dict[str, set[int]] = {}
        for batch in range(4):
            for data, allowed in flood_datagrams(daemon.sip_port, 50):
                if allowed is not None:
                    call_id = _call_id(data)
                    allowed_by_call[call_id] = allowed_by_call.get(call_id, set()) | allowed
                client.send(data)
                client.drain(0.002)  # pace the flood so the kernel drops none
            assert daemon.health() == 200, f"HTTP stopped answering during batch {batch}"
        # until every request that must be answered was, or the deadline (UDP may lose some)
        deadline = time.monotonic() + 10
        while (time.monotonic() < deadline and not allowed_by_call.keys()
               <= {_call_id(reply) for reply in client.received}):
            client.drain(0.2)
        unexpected = [reply[:60] for reply in client.received
                      if hostile.status_of(reply) not in allowed_by_call.get(
                          _call_id(reply), ())]
        assert not unexpected, unexpected[:5]
        answered = {_call_id(reply) for reply in client.received}
        assert len(answered) >= 0.95 * len(allowed_by_call)
        statuses = {hostile.status_of(reply) for reply in client.received}
        assert {481, 405, 501, 200, 400, 482, 483} <= statuses <= SIP_ANSWERS, statuses
        grown = hostile.rss_kib(pid) - baseline
        assert grown < 20_000, f"RSS grew by {grown} KiB"
        assert daemon.process.poll() is None
    finally:
        client.close()


def test_sip_tcp_junk_and_stray_requests(daemon):
    port = daemon.sip_port
    # a stream of valid but stray requests on one connection: each answered on it
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(hostile.sip_request("BYE", port, transport="TCP", to_tag="x")
                     + hostile.sip_request("OPTIONS", port, transport="TCP")
                     + b"\r\n\r\n")  # RFC 5626 ping between messages
        received = b""
        deadline = time.monotonic() + 5
        while received.count(b"SIP/2.0 ") < 2 and time.monotonic() < deadline:
            received += sock.recv(65536)
        assert received.startswith(b"SIP/2.0 481 ")
        assert b"SIP/2.0 200 OK" in received
    # binary junk: the stream is unframeable, the daemon closes it
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(hostile.secrets.token_bytes(3000) + b"\r\n\r\n")
            assert hostile.closed_within(sock, 5) is not None
    # a Content-Length far beyond the size limit
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(hostile.sip_request("OPTIONS", port, transport="TCP").replace(
            b"Content-Length: 0", b"Content-Length: 99999999"))
        assert hostile.closed_within(sock, 5) is not None
    assert daemon.health() == 200
    client = hostile.UDPClient(port)
    try:
        assert hostile.status_of(client.request(hostile.sip_request("OPTIONS", port))) == 200
    finally:
        client.close()


# HTTP abuse


def test_oversized_url_headers_and_body_get_a_clean_4xx(daemon):
    port = daemon.config.http.https
    long_url = b"GET /callcontroller/" + b"a" * 9000 + b"/b HTTP/1.1\r\nHost: x\r\n\r\n"
    assert hostile.http_status(hostile.raw_http(port, long_url)) == 414
    huge_line = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert hostile.http_status(hostile.raw_http(port, huge_line)) == 431
    many = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200 + b"\r\n"
    assert hostile.http_status(hostile.raw_http(port, many)) == 400
    body = (b"POST /callcontroller/user1/user2 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 10000000\r\n\r\n" + b"a" * 1000)
    assert hostile.http_status(hostile.raw_http(port, body)) == 413
    chunked = (b"POST /callcontroller/user1/user2 HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               + (b"4000\r\n" + b"a" * 0x4000 + b"\r\n") * 8)
    assert hostile.http_status(hostile.raw_http(port, chunked)) == 413
    garbage = hostile.raw_http(port, b"\x16\x03\x01 not http at all\r\n\r\n")
    assert garbage == b"HTTP/1.1 400 Bad Request\r\n\r\n"
    assert daemon.health() == 200


def test_a_slow_client_is_cut_off_and_others_are_served(daemon):
    sock = hostile.tls_context().wrap_socket(
        socket.create_connection(("127.0.0.1", daemon.config.http.https), timeout=5))
    answer = b""
    try:
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaa":
            sock.sendall(bytes([byte]))
            assert daemon.health() == 200  # the reactor is not stuck on the slow one
            sock.settimeout(0.3)
            try:
                answer += sock.recv(4096)
            except TimeoutError:
                continue
            except (ssl.SSLError, OSError):
                break
            if answer:
                break
    finally:
        sock.close()
    assert hostile.http_status(answer) == 408  # cut off by the request deadline


def test_half_open_tls_is_closed_within_the_deadline(daemon):
    from sipxcc.web.limits import ABORT_GRACE, REQUEST_DEADLINE
    silent = socket.create_connection(("127.0.0.1", daemon.config.http.https), timeout=5)
    partial = socket.create_connection(("127.0.0.1", daemon.config.http.https), timeout=5)
    partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello start
    try:
        assert daemon.health() == 200
        for sock in (silent, partial):
            took = hostile.closed_within(sock, REQUEST_DEADLINE + ABORT_GRACE + 3)
            assert took is not None, "the daemon kept a half-open TLS connection"
    finally:
        silent.close()
        partial.close()


def test_idle_connections_beyond_the_per_host_limit_are_refused(daemon):
    from sipxcc.web.limits import MAX_CONNECTIONS_PER_HOST
    port = daemon.config.http.http
    held = []
    try:
        for _ in range(MAX_CONNECTIONS_PER_HOST):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5,
                                                 source_address=("127.0.0.2", 0)))
        # the connections are admitted in order: wait until the last one is
        wait_for(lambda: daemon.get("/health", secure=False)[0] == 200, timeout=5)
        refused = hostile.raw_http(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
                                   secure=False, timeout=5, source="127.0.0.2")
        assert hostile.http_status(refused) == 503
        assert b"Retry-After: 5" in refused
        # another client address is still served, over HTTP and HTTPS
        assert daemon.get("/health", secure=False)[0] == 200
        assert daemon.health() == 200
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: hostile.http_status(hostile.raw_http(
        port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        secure=False, timeout=5, source="127.0.0.2")) == 200, timeout=10)


def test_thousands_of_idle_connections_do_not_stop_the_daemon(daemon):
    from sipxcc.web.limits import MAX_CONNECTIONS
    port = daemon.config.http.http
    held = []
    try:
        for n in range(MAX_CONNECTIONS + 100):
            source = f"127.0.1.{n % 150 + 1}"  # spread below the per-host cap
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=5,
                                                     source_address=(source, 0)))
            except OSError:
                break
        assert len(held) > MAX_CONNECTIONS

        def refused_or_reaped() -> bool:
            """A newcomer is refused (503) while the cap is full -- unless the 10-s request
            deadline already reaped the idle ones (a slow machine): both protect us."""
            status = hostile.http_status(hostile.raw_http(
                port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", secure=False,
                timeout=5, source="127.0.2.1"))
            if status == 503:
                return True
            oldest = held[0]
            oldest.setblocking(False)
            try:
                data = oldest.recv(1024)
            except BlockingIOError:
                return False
            return data == b"" or data.startswith(b"HTTP/1.1 408")
        wait_for(refused_or_reaped, timeout=30)
        assert daemon.process.poll() is None
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: daemon.health() == 200, timeout=30)


MALFORMED_AUTHORIZATION = [
    "Digest",
    "Digest ,,,,",
    'Digest username="user1", realm="sipx.test", nonce="x", uri="/", response="zz"',
    'Digest username="user1", nonce=, uri="/callcontroller/user1/user2", response=""',
    'Digest username="' + "a" * 5000 + '"',
    'Digest username="user1\\", realm="unterminated',
    "Digest username=user1, qop=auth, nc=zzzzzzzz, cnonce=, nonce=\x01, response=1",
    "Digest algorithm=SHA-512-256, username=\"user1\"",
    "Basic",
    "Basic !!!notbase64!!!",
    "Basic " + "QUFB" * 1000,
    "Basic dXNlcjE=",  # "user1", no colon
    "Bearer abc",
    "\u00e9\u00e8",
]


# 401 for each; once an address has failed FAILURE_LIMIT (10) times, 429. A failure is a
# credential that could not be checked or was wrong; no credential at all (an unknown scheme,
# Basic over plain HTTP) is only challenged again and does not count.
# Over HTTPS the first ten (Digest and Basic that cannot be checked) all count, so from the
# eleventh on the address is blocked. Over plain HTTP Basic and the unknown schemes are only
# challenged: the eight Digest failures stay under the limit.
MALFORMED_STATUSES = {True: [401] * 10 + [429] * 4, False: [401] * 14}


@pytest.mark.parametrize("secure", [True, False], ids=["https", "http"])
def test_malformed_authorization_is_401_never_500(tmp_path, secure):
    # no trusted hosts: every request needs credentials
    with Daemon(write_config(tmp_path, http_trusted="192.0.2.1")) as daemon:
        statuses = []
        for header in MALFORMED_AUTHORIZATION:
            status, body = daemon.get("/callcontroller/user1/user2", secure=secure,
                                      headers={"Authorization": header})
            statuses.append(status)
            assert b"Traceback" not in body
        assert statuses == MALFORMED_STATUSES[secure]
        assert daemon.health() == 200
        assert "Traceback" not in daemon.log_text()


# Requests forged into a live dialog, and hostile text in what the phone reports


NASTY = "<b>&amp; ]]> \"q\" 'a' <![CDATA[x]]>"
CONTROL = "\x01\x07\x1b\udcff\udcfe"  # control characters and invalid UTF-8 bytes


def test_forged_in_dialog_requests_do_not_touch_the_call(setup):
    s = setup()
    phone = s.phone("user1", "refer_hostile", keys={"nasty": NASTY, "ctl": CONTROL},
                    extra_args=("-d", "4000"))
    code, _ = curl("-X", "POST", s.url("/callcontroller/user1/user2"))
    assert code == 200
    invite = wait_for(lambda: phone.received("INVITE"))[0]
    wait_for(lambda: phone.received("REFER"))
    call_id = _header(invite, "Call-ID")
    our_tag = _header(invite, "From").partition(";tag=")[2]
    port = s.daemon.sip_port
    client = hostile.UDPClient(port)
    try:
        forged = [
            hostile.sip_request("NOTIFY", port, call_id=call_id, to_tag=our_tag,
                                from_tag="forged", extra="Event: refer\r\n"
                                "Subscription-State: terminated\r\n"
                                "Content-Type: message/sipfrag", body=b"SIP/2.0 603 Forged"),
            hostile.sip_request("BYE", port, call_id=call_id, to_tag=our_tag,
                                from_tag="forged"),
            hostile.sip_request("BYE", port, call_id=call_id, to_tag="wrong",
                                from_tag="forged"),
        ]
        for data in forged:
            reply = client.request(data)
            assert hostile.status_of(reply) == 481, reply
    finally:
        client.close()
    assert phone.wait(20) == 0, phone.errors()
    lines = wait_for(lambda: (lambda ls: ls if ("NOTIFY", "SIP/2.0 200 OK") in ls else None)(
        status_lines(curl(s.url("/callcontroller/user1/user2"))[1])))
    assert not any("Forged" in line for _, line in lines)
    assert "Reason: SIP;cause=200" in phone.received("BYE")[0]


def test_hostile_text_from_a_phone_renders_as_valid_xml(setup):
    s = setup()
    phone = s.phone("user1", "refer_hostile", keys={"nasty": NASTY, "ctl": CONTROL},
                    extra_args=("-d", "10"))
    code, _ = curl("-X", "POST", s.url("/callcontroller/user1/user2"))
    assert code == 200
    assert phone.wait(20) == 0, phone.errors()

    def final_document():
        body = curl(s.url("/callcontroller/user1/user2"))[1]
        return body if "SIP/2.0 200 OK" in body.split("NOTIFY")[-1] else None
    body = wait_for(final_document)
    root = etree.fromstring(body.encode("utf-8"))  # raises on invalid XML
    lines = [status.findtext(f"{NS}status-line") for status in root.iter(f"{NS}status")]
    ringing = [line for line in lines if line.startswith("SIP/2.0 180 Ringing ")]
    assert ringing and "<b>&amp; ]]>" in ringing[0]
    assert any(line.startswith("SIP/2.0 100 Trying <b>&amp; ]]>") for line in lines)
    json_body = curl("-H", "Accept: application/json", s.url("/callcontroller/user1/user2"))[1]
    json_lines = [status["status-line"] for status in json.loads(json_body)["status-lines"]]
    assert json_lines[:len(lines)] == lines  # the same cleaned text as the XML


def _header(message: str, name: str) -> str:
    for line in message.splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in {message}")
