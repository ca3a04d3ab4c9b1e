"""
Helpers for end-to-end tests: curl, the status document, polling, and a Setup of
Kamailio, sipp phones and the daemon (the `setup` fixture in conftest.py makes one).
"""

from __future__ import annotations

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
