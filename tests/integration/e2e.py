"""
Helpers for end-to-end tests: curl, the status document, polling, a Setup of Kamailio,
sipp phones and the daemon (the `setup` fixture in conftest.py makes one), and a
PhoneSetup of Kamailio and the daemon for real phones.
"""

from __future__ import annotations

import json
import subprocess
import time

from lxml import etree

from tests.integration.daemon import Daemon, free_ports, write_config

NS = "{http://www.sipfoundry.org/sipX/schema/xml/call-status-00-00}"


def curl(*args: str) -> tuple[int, str]:
    """Run the real curl; returns (HTTP status, body). curl failing (no connection, timeout,
    reset: HTTP status 000) fails the test with curl's own message."""
    out = subprocess.run(["curl", "-sSk", "-w", "\n%{http_code}", *args], capture_output=True,
                         text=True, timeout=20)
    if out.returncode != 0:
        raise AssertionError(f"curl {' '.join(args)[:200]} exited {out.returncode}: "
                             f"{out.stderr.strip()}")
    body, _, code = out.stdout.rpartition("\n")
    return int(code), body


def status_lines(body: str) -> list[tuple[str, str]]:
    root = etree.fromstring(body.encode())
    return [(s.findtext(f"{NS}method"), s.findtext(f"{NS}status-line"))
            for s in root.iter(f"{NS}status")]


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.1):
    """Poll C{predicate} until it returns something true, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)  # polling interval, not synchronisation
    raise AssertionError("condition not met in time")


class Setup:
    """Kamailio, the phones and the daemon for one test."""

    def __init__(self, tmp_path, kamailio_factory, phone_factory, *, transport: str = "udp",
                 **config):
        self.tmp_path = tmp_path
        self.phone_factory = phone_factory
        sip_port, self.proxy_port = free_ports(2)
        self.ports = {user: port for user, port in zip(("user1", "user2", "user3", "user4"),
                                                       free_ports(4), strict=False)}
        self.proxy = kamailio_factory(
            {user: f"sip:{user}@127.0.0.1:{port}" for user, port in self.ports.items()},
            f"127.0.0.1:{sip_port}", port=self.proxy_port)
        proxy_uri = f"sip:127.0.0.1:{self.proxy_port};lr"
        if transport == "tcp":
            proxy_uri += ";transport=tcp"
        path = write_config(tmp_path, sip_port=sip_port, sip_proxy=proxy_uri, **config)
        self.daemon = Daemon(path)

    def phone(self, user: str, scenario: str, **kwargs):
        return self.phone_factory(scenario, self.ports[user], **kwargs)

    def url(self, path: str) -> str:
        return self.daemon.https_url + path


class PhoneSetup:
    """
    Kamailio and the daemon for real phones (tests/integration/phones.py). The ports are
    chosen first, so that the phones can be made with C{proxy_uri}; C{daemon_for(*phones)}
    then starts Kamailio routing each phone's user to it and returns the daemon, not yet
    started (a context manager, like the phones).
    """

    def __init__(self, tmp_path, kamailio_factory):
        self.tmp_path = tmp_path
        self.kamailio_factory = kamailio_factory
        self.sip_port, self.proxy_port = free_ports(2)
        self.proxy_uri = f"sip:127.0.0.1:{self.proxy_port};lr"
        self.proxy = None

    def daemon_for(self, *phones, routes: dict[str, str] | None = None,
                   **config: object) -> Daemon:
        """C{routes}: more users Kamailio routes (user -> contact); C{config}: overrides
        of the daemon's config (write_config's C{section_key=value})."""
        contacts = {phone.user: phone.contact for phone in phones} | (routes or {})
        self.proxy = self.kamailio_factory(contacts, f"127.0.0.1:{self.sip_port}",
                                           port=self.proxy_port)
        return Daemon(write_config(self.tmp_path, sip_port=self.sip_port,
                                   sip_proxy=self.proxy_uri, **config))


def place_call(daemon: Daemon, calling: str, called: str, query: str = "") -> str:
    """POST a call from C{calling} to C{called} (C{query}: "?sipMethod=INVITE", ...) as
    the calling user, from a trusted host; the call's /calls/{id} location."""
    code, body = curl("-X", "POST", "-w", "\n%header{location}\n%{http_code}",
                      f"{daemon.https_url}/callcontroller/{calling}/{called}{query}")
    body, _, location = body.rpartition("\n")
    assert code == 200, body
    return location


def call_state(daemon: Daemon, location: str) -> str:
    """The call's state as its status document (JSON) says."""
    code, body = curl("-H", "Accept: application/json", daemon.https_url + location)
    assert code == 200, body
    return json.loads(body)["state"]
