"""A fake C{IReactorUDP} for the ringback pool: ports bound in memory, datagrams recorded,
and ports other programs hold (binding them fails as the kernel would)."""

from __future__ import annotations

from twisted.internet.error import CannotListenError

from tests.rtpwire import Rtp

__all__ = ["FakePort", "FakeUDP", "Rtp"]


class FakePort:
    """A bound UDP port: C{written} holds (datagram, address) as sent."""

    def __init__(self, udp: FakeUDP, port: int, interface: str):
        self.udp = udp
        self.port = port
        self.interface = interface
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.listening = True
        self.fail_with: OSError | None = None

    def write(self, datagram: bytes, addr: tuple[str, int]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.written.append((datagram, addr))

    def stopListening(self) -> None:  # noqa: N802 -- Twisted's name
        self.listening = False
        del self.udp.bound[self.port]


class FakeUDP:
    """C{listenUDP} on a table of ports; C{taken} are held by someone else."""

    def __init__(self, taken: set[int] | None = None):
        self.taken = set(taken or ())
        self.bound: dict[int, FakePort] = {}
        self.attempts = 0
        self.ever: list[FakePort] = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):  # noqa: N802, N803
        self.attempts += 1
        if port in self.taken or port in self.bound:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        bound = self.bound[port] = FakePort(self, port, interface)
        self.ever.append(bound)
        protocol.transport = bound
        return bound
