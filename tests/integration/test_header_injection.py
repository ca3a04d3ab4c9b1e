"""
SIP header injection through the REST interface, over real HTTPS and SIP sockets: the
daemon's proxy is a fake that records every datagram it gets (FakeProxy in
tests/integration/sipfake.py).

An IPv6 zone ID ("[fe80::1%...]") once let any user put CR LF and headers of their own
into the INVITE and REFER the daemon sends to the proxy; a display name from the user
directory could do the same to From, and a conference PIN's "#" went out unescaped.
"""

from __future__ import annotations

import pytest
from lxml import etree

from tests.integration.daemon import Daemon, write_config
from tests.integration.e2e import NS
from tests.integration.sipfake import FakeProxy, field, head_lines, https_request

# "[fe80::1%<zone>]" whose zone, once the URL is decoded, is CR LF and two header lines
ZONE = ("[fe80::1%25%0d%0aX-Injected:%20yes%0d%0aRefer-To:%20%3Csip:evil@attacker.example"
        "%3E]")
MARKERS = (b"X-Injected", b"attacker.example")


@pytest.fixture
def proxy():
    with FakeProxy() as fake:
        yield fake


def start(tmp_path, proxy, edit_users=None) -> Daemon:
    """The daemon routing through C{proxy}; C{edit_users(text)} rewrites the demo users."""
    path = write_config(tmp_path, sip_proxy=proxy.uri, sip_transports="udp")
    if edit_users is not None:
        users = tmp_path / "validusers.xml"
        users.write_text(edit_users(users.read_text()))
    return Daemon(path)


def post(daemon: Daemon, path: str) -> tuple[int, str]:
    """POST over HTTPS from 127.0.0.1 (a trusted host: no credentials); (status, text)."""
    status, _, body = https_request(daemon, "POST", path, accept=None)
    root = etree.fromstring(body)  # <processing-status>: result, code, text
    assert root.tag == f"{NS}processing-status", body
    return status, root[2].text


ATTACKS = {
    # user3 may act as agent for other calling users (users.agents)
    "callingUser": f"/callcontroller/user1@{ZONE}/user2?agent=user3",
    "calledUser": f"/callcontroller/user1/user2@{ZONE}",
    "agent": f"/callcontroller/user1/user2?agent=user3@{ZONE}",
    "target": f"/callcontroller/user1/user2?sipMethod=INVITE&action=transfer"
              f"&target=user4@{ZONE}",
}


def test_a_zone_id_with_crlf_is_refused_and_nothing_reaches_the_proxy(tmp_path, proxy):
    with start(tmp_path, proxy) as daemon:
        answers = {name: post(daemon, path) for name, path in ATTACKS.items()}
        # a good call afterwards: its INVITE is the first and only thing the proxy gets
        assert post(daemon, "/callcontroller/user1/user2")[0] == 200
        proxy.wait_for("INVITE")
        injected = [data for data in proxy.received for marker in MARKERS if marker in data]
        invites = proxy.messages("INVITE")
        log_lines = daemon.log_text().splitlines()
    for name, (status, text) in answers.items():
        assert status == 400, (name, status, text)
        assert text.startswith(f"Bad parameter {name} = "), (name, text)
    assert injected == []
    assert [line for line in log_lines if line.startswith(("X-Injected", "Refer-To"))] == []
    assert len(invites) == 1 and invites[0].startswith(b"INVITE sip:user1@sipx.test;")


def test_a_display_name_with_crlf_stays_inside_one_quoted_from(tmp_path, proxy):
    def evil_display_name(text: str) -> str:
        return text.replace(
            "<displayName>User One</displayName>",
            '<displayName>Evil&#13;&#10;X-Injected: yes "quoted" back\\slash</displayName>')

    with start(tmp_path, proxy, evil_display_name) as daemon:
        assert post(daemon, "/callcontroller/user1/user2")[0] == 200
        start_line, fields = head_lines(proxy.wait_for("INVITE"))
    assert start_line.startswith("INVITE sip:user1@sipx.test;")
    assert [name for name, _ in fields if name.lower() == "x-injected"] == []
    assert [name for name, _ in fields].count("From") == 1
    assert field(fields, "From").startswith(
        '"Evil X-Injected: yes \\"quoted\\" back\\\\slash" <sip:user1@sipx.test>;tag=')


def test_a_conference_pin_is_escaped_in_the_one_refer_to(tmp_path, proxy):
    with start(tmp_path, proxy) as daemon:
        assert post(daemon, "/callcontroller/user1/user2?confpin=12%23*")[0] == 200
        _, fields = head_lines(proxy.wait_for("REFER"))
    refer_to = [value for name, value in fields if name == "Refer-To"]
    assert refer_to == ["<sip:user2@sipx.test?X-ConfPin=12%23*>"]
