"""
Limits on incoming SIP stream (TCP and TLS) connections.

L{ConnectionLimits} caps the connections open at once, in total and per client address
(an IPv6 client counts per /64, the block one subscriber usually gets). The configured
proxy is not held to the per-address cap, and a share of the total is kept free for it so
that no one else can fill every slot and lock the proxy out. A connection beyond a cap is
closed as soon as it is accepted; refusals are counted and logged at most once a minute.
"""

from __future__ import annotations

from sipxcc.hosts import client_key, ip_address
from sipxcc.logs import logger
from sipxcc.timers import Clock

log = logger(__name__)

MAX_CONNECTIONS = 1000
"""Incoming SIP TCP/TLS connections open at once, all clients together."""

MAX_CONNECTIONS_PER_HOST = 64
"""Incoming SIP TCP/TLS connections open at once from one address (IPv6: one /64)."""

REFUSAL_LOG_INTERVAL = 60.0
"""Seconds between two log lines about refused connections."""

MAX_PROXY_ADDRESSES = 16
"""Addresses remembered as the proxy's (its host name may resolve to a new one later)."""


class ConnectionLimits:
    """
    Counts open incoming connections in total and per client (L{client_key}).

    Connections from the proxy's address (L{add_proxy}) are admitted up to C{total};
    everyone else shares C{total - reserve}, at most C{per_host} each, where C{reserve}
    is C{per_host} (at most half the total) -- the proxy always finds that many slots.
    """

    def __init__(self, clock: Clock, total: int = MAX_CONNECTIONS,
                 per_host: int = MAX_CONNECTIONS_PER_HOST,
                 log_interval: float = REFUSAL_LOG_INTERVAL):
        self.clock = clock
        self.total = total
        self.per_host = per_host
        self.reserve = min(per_host, total // 2)
        self.log_interval = log_interval
        self.proxies: set[str] = set()
        self.open = 0
        self.proxy_open = 0
        self.by_client: dict[str, int] = {}
        self.refused = 0
        self._next_log = float("-inf")

    def add_proxy(self, host: str) -> None:
        """Treat connections from C{host} (an IP address) as the proxy's."""
        address = ip_address(host)
        if address is not None and len(self.proxies) < MAX_PROXY_ADDRESSES:
            self.proxies.add(str(address))

    def is_proxy(self, host: str) -> bool:
        address = ip_address(host)
        return address is not None and str(address) in self.proxies

    def admit(self, host: str, transport: str = "TCP") -> tuple[str, bool] | None:
        """
        Count a new connection from C{host}: a token to hand back to L{release}, or None
        (nothing counted; refusal counted and maybe logged) when a cap is reached.
        """
        if self.is_proxy(host):
            if self.open < self.total:
                self.open += 1
                self.proxy_open += 1
                return ("", True)
            self._refused(host, transport, "the connection limit")
            return None
        key = client_key(host)
        if self.open - self.proxy_open >= self.total - self.reserve or self.open >= self.total:
            self._refused(host, transport, "the connection limit")
            return None
        if self.by_client.get(key, 0) >= self.per_host:
            self._refused(host, transport, "the per-address connection limit")
            return None
        self.open += 1
        self.by_client[key] = self.by_client.get(key, 0) + 1
        return (key, False)

    def release(self, token: tuple[str, bool]) -> None:
        """A connection L{admit}ted with C{token} has closed."""
        key, proxy = token
        self.open -= 1
        if proxy:
            self.proxy_open -= 1
            return
        left = self.by_client.get(key, 1) - 1
        if left:
            self.by_client[key] = left
        else:
            self.by_client.pop(key, None)

    def _refused(self, host: str, transport: str, limit: str) -> None:
        self.refused += 1
        now = self.clock.seconds()
        if now >= self._next_log:
            self._next_log = now + self.log_interval
            log.warn("refusing SIP {transport} connections: {limit} is reached (latest from "
                     "{host}; {count} refused since start; logged at most once a minute)",
                     transport=transport, limit=limit, host=host, count=self.refused)
