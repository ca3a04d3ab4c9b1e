"""Host text shared by the configuration and the SIP layer: is it an IP address, and
C{host:port} with an IPv6 address in brackets (RFC 3261 §19.1.1, RFC 3986 §3.2.2)."""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)
def is_ip(host: str) -> bool:
    """Whether C{host} is an IPv4 or IPv6 address (without brackets)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_port(host: str, port: int) -> str:
    """C{host:port}, with an IPv6 address as C{[address]:port}."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
