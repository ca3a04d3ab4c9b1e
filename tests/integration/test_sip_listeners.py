"""The daemon's SIP ports: UDP, TCP and TLS, on IPv4 and IPv6, answer OPTIONS (RFC 3261 §11)."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.integration.daemon import Daemon, free_ports, write_config


def options(host: str, port: int, transport: str) -> bytes:
    via_host = f"[{host}]" if ":" in host else host
    return (f"OPTIONS sip:callcontroller@{via_host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} {via_host}:9;branch=z9hG4bKlisten{transport};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:probe@sipx.test>;tag=1\r\n"
            f"To: <sip:callcontroller@sipx.test>\r\nCall-ID: probe-{transport}\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def ask(host: str, port: int, transport: str) -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if transport == "UDP":
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(options(host, port, transport), (host, port))
            return sock.recv(65536)
    raw = socket.create_connection((host, port), timeout=5)
    if transport == "TLS":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        raw = context.wrap_socket(raw)
    with raw:
        raw.sendall(options(host, port, transport))
        return raw.recv(65536)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_options_over_every_transport(tmp_path, host):
    sip_port, = free_ports(1, host, span=2)  # TLS listens on sip.port + 1
    path = write_config(tmp_path, sip_address=host, sip_port=sip_port,
                        sip_transports="udp tcp tls")
    with Daemon(path):
        for transport, port in (("UDP", sip_port), ("TCP", sip_port), ("TLS", sip_port + 1)):
            answer = ask(host, port, transport)
            assert answer.startswith(b"SIP/2.0 200 OK\r\n"), (transport, answer)
            assert b"Allow: INVITE" in answer
