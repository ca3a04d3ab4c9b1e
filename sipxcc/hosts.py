"""Host text shared by the configuration, the SIP and the web layers: is it an IP address,
C{host:port} with an IPv6 address in brackets (RFC 3261 §19.1.1, RFC 3986 §3.2.2), and
the unit a client is counted in by the connection limits."""

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


IPV6_PREFIX = 64
"""IPv6 clients are counted per network of this prefix length: one host usually holds a
whole /64 and can use any address in it."""


def ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address C{host} is (brackets and an IPv6 zone ignored, C{::ffff:a.b.c.d} as
    the IPv4 address it maps), or None when it is no IP address."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_key(host: str) -> str:
    """
    The unit a client is counted in: an IPv4 address as it is (also when written
    C{::ffff:a.b.c.d}), an IPv6 address as its /64 network; anything else as it is.
    """
    address = ip_address(host)
    if address is None:
        return host
    if address.version == 6:
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def host_port(host: str, port: int) -> str:
    """C{host:port}, with an IPv6 address as C{[address]:port}."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
