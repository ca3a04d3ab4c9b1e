"""
The internal port (``http.internal``) behind a stand-in for sipXconfig's redirector:
curl → redirector → sipxcc → Kamailio → sipp phone, and what the port refuses.

The daemon trusts only 127.0.0.1; an untrusted client is curl bound to 127.0.0.2
(``--interface``). Tests that need no phone run without Kamailio: everything they check
is decided before any SIP is sent.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from lxml import etree

from tests.integration.daemon import Daemon, free_ports, run_twistd, write_config
from tests.integration.e2e import status_lines, wait_for
from tests.integration.redirector import Redirector

UNTRUSTED = "127.0.0.2"
XML = "text/xml; charset=UTF-8"
PORTAL_USERS = {"user1": "portal1", "user2": "portal2", "user3": "portal3",
                "ghost": "portal9"}  # ghost: a portal user sipxcc's directory lacks

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def fetch(*args: str) -> tuple[int, str | None, bytes]:
    """The real curl: (status, Content-Type, body)."""
    with tempfile.TemporaryDirectory() as scratch:
        head, body = Path(scratch, "head"), Path(scratch, "body")
        result = subprocess.run(
            ["curl", "-sk", "-D", str(head), "-o", str(body), "-w", "%{http_code}", *args],
            capture_output=True, timeout=20, check=False)
        heads = head.read_bytes().decode("latin-1") if head.exists() else ""
        found = re.findall(r"(?im)^content-type:\s*(.+?)\s*$", heads)
        return (int(result.stdout or b"0"), found[-1] if found else None,
                body.read_bytes() if body.exists() else b"")


def error_document(body: bytes) -> tuple[str, int, str]:
    flag, code, text = (element.text for element in etree.fromstring(body))
    return flag, int(code), text


def portal(user: str) -> tuple[str, str]:
    return "-u", f"{user}:{PORTAL_USERS[user]}"


def internal_url(daemon: Daemon, path: str) -> str:
    return f"http://127.0.0.1:{daemon.config.http.internal}{path}"


def from_header(message: str) -> str:
    return next(line for line in message.splitlines()
                if line.lower().startswith(("from:", "f:")))


# --- through the redirector, with Kamailio and a phone ------------------------------------


def test_portal_click_to_call_rings_the_portal_users_phone(setup):
    s = setup(http_internal=free_ports(1)[0])
    phone = s.phone("user1", "refer_transferee")
    with Redirector("127.0.0.1", s.daemon.config.http.internal, PORTAL_USERS) as portal_api:
        code, content_type, body = fetch("-X", "POST", *portal("user1"),
                                         portal_api.url + "/user1/user2")
        assert (code, content_type) == (200, XML), body
        assert error_document(body) == ("OK", 200, "Success")
        assert phone.wait(20) == 0, phone.errors()
        invite = phone.received("INVITE")[0]
        # the phone is shown the called user; the proxy authenticated the agent, user1
        assert '"User Two" <sip:user2@sipx.test>' in from_header(invite)
        assert "authenticated user1" in s.proxy.log_text()
        assert "Refer-To: <sip:user2@sipx.test>" in phone.received("REFER")[0]

        def finished():
            code, content_type, body = fetch(*portal("user1"),
                                             portal_api.url + "/user1/user2")
            assert (code, content_type) == (200, XML)
            lines = status_lines(body.decode())
            return lines if ("NOTIFY", "SIP/2.0 200 OK") in lines else None
        lines = wait_for(finished)
        assert ("INVITE", "SIP/2.0 180 Ringing") in lines
        assert portal_api.forwarded[0] == ("POST", "/callcontroller/user1/user2", "user1")


def test_a_listed_agent_places_a_call_for_another_user_through_the_portal(setup):
    s = setup(http_internal=free_ports(1)[0])
    phone = s.phone("user1", "refer_transferee")
    with Redirector("127.0.0.1", s.daemon.config.http.internal, PORTAL_USERS) as portal_api:
        code, _, body = fetch("-X", "POST", *portal("user3"),
                              portal_api.url + "/user1/user2?agent=user3&timeout=20")
        assert code == 200, body
        assert phone.wait(20) == 0, phone.errors()
        # the phone is shown the called user; the proxy authenticated the agent, user3
        assert '"User Two" <sip:user2@sipx.test>' in from_header(phone.received("INVITE")[0])
        assert "authenticated user3" in s.proxy.log_text()
        assert portal_api.forwarded == [
            ("POST", "/callcontroller/user1/user2?agent=user3&timeout=20", "user3")]


# --- what the internal port refuses (no SIP needed) ---------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    path = write_config(tmp_path_factory.mktemp("sipxcc"), http_trusted="127.0.0.1",
                        http_internal=free_ports(1)[0])
    with Daemon(path) as running:
        yield running


@pytest.fixture
def portal_api(daemon):
    with Redirector("127.0.0.1", daemon.config.http.internal, PORTAL_USERS) as running:
        yield running


def test_a_portal_user_may_not_place_or_see_another_users_call(daemon, portal_api):
    for method in ("POST", "GET"):
        code, content_type, body = fetch("-X", method, *portal("user1"),
                                         portal_api.url + "/user2/user3")
        assert (code, content_type) == (403, XML), body
        assert error_document(body) == ("ERROR", 403, "user1 may not act as agent user2")
    code, _, body = fetch("-X", "POST", *portal("user1"),
                          portal_api.url + "/user1/user2?agent=user3")
    assert code == 403 and error_document(body)[1] == 403
    # Nothing was placed: the trusted view of every call is empty.
    code, _, body = fetch(internal_url(daemon, "/calls"))
    assert code == 200 and etree.fromstring(body).findall(".//{*}call") == []


def test_a_portal_user_unknown_to_sipxcc_is_403(daemon, portal_api):
    code, content_type, body = fetch("-X", "POST", *portal("ghost"),
                                     portal_api.url + "/ghost/user2")
    assert (code, content_type) == (403, XML)
    assert error_document(body) == ("ERROR", 403, "Unknown sipx-user")
    assert "Unknown sipx-user (sipx-user: ghost)" in daemon.log_text()


@pytest.mark.parametrize("headers", [
    ["-H", "sipx-user: user1;lr"],
    ["-H", "sipx-user: <sip:user1@sipx.test>"],
    ["-H", "sipx-user;"],
    ["-H", "sipx-user: user1", "-H", "sipx-user: user3"],
])
def test_a_malformed_sipx_user_is_403_and_logged(daemon, headers):
    code, content_type, body = fetch("-X", "POST", *headers,
                                     internal_url(daemon, "/callcontroller/user1/user2"))
    assert (code, content_type) == (403, XML), body
    assert error_document(body)[1] == 403
    assert "internal listener: refused a request from 127.0.0.1" in daemon.log_text()


def test_an_untrusted_source_is_refused_and_logged_once(daemon):
    marker = "refusing requests from 127.0.0.2"
    for path in ("/callcontroller/user1/user2", "/health"):
        code, content_type, body = fetch("--interface", UNTRUSTED, "-X", "POST",
                                         "-H", "sipx-user: user1", internal_url(daemon, path))
        assert (code, content_type) == (403, XML)
        assert error_document(body) == ("ERROR", 403, "Only trusted hosts may use this port")
    assert daemon.log_text().count(marker) == 1  # the only test refused on this port
    assert fetch(internal_url(daemon, "/health"))[0] == 200


def test_sipx_user_gets_an_unauthenticated_client_nowhere_else(daemon):
    headers = ["-H", "sipx-user: user1", "-X", "POST"]
    https = f"{daemon.https_url}/callcontroller/user1/user2"
    plain = f"{daemon.http_url}/callcontroller/user1/user2"
    assert fetch("--interface", UNTRUSTED, *headers, https)[0] == 401
    assert fetch("--interface", UNTRUSTED, *headers, plain)[0] == 401
    assert fetch(*headers, plain)[0] == 401  # plain HTTP: no trusted-host exemption
    code, _, body = fetch(internal_url(daemon, "/calls"))
    assert code == 200 and etree.fromstring(body).findall(".//{*}call") == []


def test_an_internal_port_in_use_stops_start_up_with_one_line(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        path = write_config(tmp_path, http_internal=port)
        result = run_twistd("-n", "--pidfile=", "sipxcc", "--config", str(path))
    finally:
        holder.close()
    assert result.returncode != 0
    assert f"http.internal: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
