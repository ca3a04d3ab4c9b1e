"""
SIP over TLS toward the proxy verifies it (tls.ca_file, the name from sip.proxy), and every
TLS endpoint of the daemon speaks TLS 1.2 only with ECDHE and AEAD suites. Over real
sockets: the daemon under twistd, fake TLS proxies with certificates made in the test.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from tests.integration.daemon import Daemon, free_ports, run_twistd, write_config
from tests.integration.sipfake import (
    TLSServer,
    call_status_lines,
    make_certificate,
    place_call,
    wait_for_state,
)

ENDED = ("failed", "ended")


def wait_until(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # polling interval, not synchronisation
    raise AssertionError("condition not met in time")


@pytest.fixture
def pki(tmp_path):
    """Files: ca.pem, good (CA-signed for 127.0.0.1), rogue (self-signed for 127.0.0.1),
    other_name (CA-signed for 127.0.0.2 only)."""
    ca_pem, _, ca = make_certificate("sipxcc test CA", ca=True)
    files = {"ca": tmp_path / "ca.pem"}
    files["ca"].write_bytes(ca_pem)
    for name, issuer, addresses in (("good", ca, ("127.0.0.1",)), ("rogue", None, ("127.0.0.1",)),
                                    ("other_name", ca, ("127.0.0.2",))):
        cert, key, _ = make_certificate(f"proxy {name}", ca if issuer else None,
                                        addresses=addresses)
        (tmp_path / f"{name}.pem").write_bytes(cert)
        (tmp_path / f"{name}.key").write_bytes(key)
        files[name] = (str(tmp_path / f"{name}.pem"), str(tmp_path / f"{name}.key"))
    return files


def test_the_proxys_certificate_and_name_are_verified(tmp_path, pki):
    port, sip_port = free_ports(2)
    path = write_config(tmp_path, sip_port=sip_port, tls_ca_file=str(pki["ca"]),
                        sip_proxy=f"sip:127.0.0.1:{port};transport=tls;lr")
    with Daemon(path) as daemon:
        refused = [("rogue", None), ("other_name", None), ("good", "AES128-SHA")]
        for (name, ciphers), called in zip(refused, ("user2", "user3", "user4"), strict=False):
            proxy = TLSServer(*pki[name], ciphers=ciphers, port=port)
            try:
                location = place_call(daemon, "user1", called)
                assert wait_for_state(daemon, location, ENDED) == "failed"
                # like an unreachable proxy (RFC 3261 §18.4)
                assert call_status_lines(daemon, location) == ["SIP/2.0 503 Service Unavailable"]
                wait_until(lambda: proxy.handshakes)  # noqa: B023 -- used at once
            finally:
                proxy.close()
            assert proxy.handshakes[0] is not True or name == "other_name", (name, proxy)
            assert bytes(proxy.data) == b"", (name, bytes(proxy.data[:200]))
        assert daemon.log_text().count("handshake failed, nothing sent") >= 3
        # the proxy the CA vouches for gets the INVITE
        proxy = TLSServer(*pki["good"], port=port)
        try:
            place_call(daemon, "user2", "user1")
            wait_until(lambda: b"INVITE sip:user2@sipx.test" in proxy.data)
        finally:
            proxy.close()
        assert proxy.handshakes[0] is True


@pytest.mark.parametrize("content, problem", [
    (None, "cannot read"),
    (b"not a certificate\n", "no PEM certificate"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "cannot be loaded"),
])
def test_an_unusable_ca_file_stops_start_up_with_one_line(tmp_path, content, problem):
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_bytes(content)
    path = write_config(tmp_path, tls_ca_file=str(ca_file))
    result = run_twistd("-n", "--pidfile=", "sipxcc", "--config", str(path))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(ca_file) in lines[0] and "tls.ca_file" in lines[0] and problem in lines[0]


def handshake(port: int, cipher: str) -> str | None:
    """The negotiated cipher with a TLS 1.2 client offering only C{cipher}, or None."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(cipher)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                return tls.cipher()[0]
        except ssl.SSLError:
            return None


def test_tls_1_2_takes_only_ecdhe_with_aead(tmp_path):
    sip_port, = free_ports(1, span=2)  # SIP over TLS listens on sip.port + 1
    path = write_config(tmp_path, sip_port=sip_port, sip_transports="udp tcp tls")
    with Daemon(path) as daemon:
        for port in (daemon.config.http.https, sip_port + 1):
            for weak in ("AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA"):
                assert handshake(port, weak) is None, (port, weak)
            for strong in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"):
                assert handshake(port, strong) == strong, (port, strong)
