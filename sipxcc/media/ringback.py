"""
A ringback tone sent as RTP (RFC 3550) to a calling user's phone while the called user
rings: INVITE mode parks the calling user on an answered dialog, where no 180 can reach
its phone, so sipxcc plays the tone itself (see docs/ladders.md).

L{RingbackStreams} is a bounded pool: at most C{max_streams} streams at once, each on its
own UDP port of a configured range, all sent from one shared 20-ms tick on the clock. A
stream sends only after L{RingbackStream.play} names where (the address and port of the
phone's SDP answer), never longer than the lifetime it was opened with, and stops at
L{RingbackStream.close} (the called user answered or the call ended).
"""

from __future__ import annotations

import ipaddress
import random
import struct
from typing import Any, Protocol

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol

from sipxcc.logs import logger
from sipxcc.media.tones import CADENCES, PAYLOAD_TYPES, period
from sipxcc.timers import Clock, TimerHandle

log = logger(__name__)

PTIME = 0.020
"""Seconds of audio in one packet (RFC 3551 §4.5: the G.711 default)."""
SAMPLES = 160
"""Samples (and G.711 bytes) in one packet."""
MAX_BURST = 5
"""Packets a stream sends in one tick at most to catch up after a late wake-up; beyond,
it skips ahead (the receiver's jitter buffer takes a gap better than a flood)."""
MAX_BIND_ATTEMPTS = 16
"""Ports of the range tried per stream that turn out taken by another program."""
WARNING_INTERVAL = 60.0
"""Seconds between two warnings that the pool is full."""

_HEADER = struct.Struct("!BBHII")  # RFC 3550 §5.1: V=2 P X CC, M PT, sequence, time, SSRC


class UDPListener(Protocol):
    """What the pool uses of C{IReactorUDP}: binding a UDP port."""

    def listenUDP(self, port: int, protocol: DatagramProtocol,  # noqa: N802 -- Twisted's
                  interface: str = "", maxPacketSize: int = 8192) -> Any: ...  # noqa: N803


class _Sender(DatagramProtocol):
    """A stream's socket: it only sends; what the phone sends back (RTCP) is dropped."""

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        return None


def unicast(address: str) -> bool:
    """True for an address a stream may send to: unicast, neither unspecified nor
    multicast nor broadcast (the answer's c= line is the phone's, not ours to trust)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.is_unspecified or ip.is_multicast:
        return False
    return not (ip.version == 4 and str(ip) == "255.255.255.255")


class RingbackStream:
    """One phone's ringback: a UDP port of the pool's, and, once it plays, the RTP stream
    (one SSRC, a random first sequence number and timestamp, RFC 3550 §5.1)."""

    def __init__(self, pool: RingbackStreams, port: int, listening: Any, lifetime: float):
        self.pool = pool
        self.port = port
        self.listening = listening
        self.destination: tuple[str, int] | None = None
        self.payload_type = PAYLOAD_TYPES[0]
        self.ssrc = random.getrandbits(32)
        self.first_sequence = random.getrandbits(16)
        self.first_timestamp = random.getrandbits(32)
        self.sent = 0        # packets sent
        self.skipped = 0     # packet times skipped after a late wake-up
        self.started = 0.0   # clock time of the first packet
        self.expiry: TimerHandle | None = pool.clock.callLater(lifetime, self.close)

    @property
    def address(self) -> str:
        """The address the stream sends from (the SDP's c= line)."""
        return self.pool.address

    @property
    def playing(self) -> bool:
        return self.destination is not None

    @property
    def closed(self) -> bool:
        return self.listening is None

    def play(self, address: str, port: int, payload_type: int) -> bool:
        """Start sending to C{address}:C{port} in C{payload_type} (PCMU or PCMA); False
        (nothing sent) for a destination or codec that is not usable."""
        if self.closed or self.playing:
            return False
        if payload_type not in PAYLOAD_TYPES or not 0 < port < 65536 or not unicast(address):
            return False
        self.destination = (address, port)
        self.payload_type = payload_type
        self.started = self.pool.clock.seconds()
        self.pool._start(self)
        return True

    def send_due(self, now: float) -> None:
        """Send the packets due by C{now} (at most L{MAX_BURST})."""
        due = int((now - self.started) / PTIME) + 1 - self.sent - self.skipped
        if due > MAX_BURST:
            self.skipped += due - MAX_BURST
            due = MAX_BURST
        for _ in range(due):
            if not self._send():
                return

    def _send(self) -> bool:
        audio = self.pool.audio[self.payload_type]
        number = self.sent + self.skipped
        offset = (number * SAMPLES) % len(audio)
        header = _HEADER.pack(0x80, self.payload_type | (0x80 if self.sent == 0 else 0),
                              (self.first_sequence + self.sent) & 0xFFFF,
                              (self.first_timestamp + number * SAMPLES) & 0xFFFFFFFF,
                              self.ssrc)
        try:
            self.listening.write(header + audio[offset:offset + SAMPLES], self.destination)
        except OSError as error:  # e.g. no route: this phone will not hear it
            log.info("ringback to {to} stopped: {error}", to=self.destination, error=error)
            self.close()
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        """Stop sending and free the port; closing again does nothing."""
        if self.listening is None:
            return
        if self.expiry is not None and self.expiry.active():
            self.expiry.cancel()
        self.expiry = None
        listening, self.listening = self.listening, None
        listening.stopListening()
        self.pool._closed(self)


class RingbackStreams:
    """
    The bounded pool of ringback streams: L{open} gives a stream on a free even port of
    C{ports} (low, high), or None when C{max_streams} are open or no port is free; one
    timer on C{clock} sends every playing stream's due packets each L{PTIME}. C{delay} is
    how long a called user rings before the calling user is offered the tone (the flow
    reads it: a callee answering at once then costs no re-INVITE).
    """

    def __init__(self, clock: Clock, udp: UDPListener, address: str,
                 ports: tuple[int, int], max_streams: int, tone: str = "us",
                 delay: float = 1.0):
        if tone not in CADENCES:
            raise ValueError(f"unknown ringback tone {tone!r}")
        self.clock = clock
        self.udp = udp
        self.address = address
        low, high = ports
        self.ports = list(range(low + low % 2, high, 2))  # RTP on even ports, RFC 3550 §11
        self.max_streams = max_streams
        self.tone = tone
        self.delay = delay
        self.audio = {pt: period(tone, pt) for pt in PAYLOAD_TYPES}
        self.streams: dict[int, RingbackStream] = {}   # port -> stream, open ones
        self.playing: dict[int, RingbackStream] = {}   # port -> stream, those sending
        self.refused = 0
        self.cursor = 0
        self.tick: TimerHandle | None = None
        self.warned_at: float | None = None

    @property
    def enabled(self) -> bool:
        return self.max_streams > 0 and bool(self.ports) and unicast(self.address)

    def open(self, lifetime: float) -> RingbackStream | None:
        """A stream on a free port, closed by itself after C{lifetime} seconds at the
        latest; None (counted in C{refused}) when the pool is full or no port is free."""
        if not self.enabled:
            return None
        if len(self.streams) >= self.max_streams:
            self._refuse(f"{self.max_streams} ringback streams open: the limit")
            return None
        attempts = 0
        for _ in range(len(self.ports)):
            port = self.ports[self.cursor]
            self.cursor = (self.cursor + 1) % len(self.ports)
            if port in self.streams:
                continue
            try:
                listening = self.udp.listenUDP(port, _Sender(), interface=self.address)
            except CannotListenError:
                attempts += 1
                if attempts >= MAX_BIND_ATTEMPTS:
                    break
                continue
            stream = self.streams[port] = RingbackStream(self, port, listening, lifetime)
            return stream
        self._refuse("no free port in ringback.ports")
        return None

    def _refuse(self, why: str) -> None:
        self.refused += 1
        now = self.clock.seconds()
        if self.warned_at is None or now - self.warned_at >= WARNING_INTERVAL:
            self.warned_at = now
            log.warn("no ringback for a calling user ({why}); {n} refused so far",
                     why=why, n=self.refused)

    def _start(self, stream: RingbackStream) -> None:
        self.playing[stream.port] = stream
        stream.send_due(stream.started)
        if self.tick is None:
            self.tick = self.clock.callLater(PTIME, self._tick)

    def _tick(self) -> None:
        self.tick = None
        now = self.clock.seconds()
        for stream in list(self.playing.values()):
            stream.send_due(now)
        if self.playing:
            self.tick = self.clock.callLater(PTIME, self._tick)

    def _closed(self, stream: RingbackStream) -> None:
        self.streams.pop(stream.port, None)
        self.playing.pop(stream.port, None)
        if not self.playing and self.tick is not None:
            if self.tick.active():
                self.tick.cancel()
            self.tick = None

    def stop(self) -> None:
        """Close every stream (shutdown)."""
        for stream in list(self.streams.values()):
            stream.close()
