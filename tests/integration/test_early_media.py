"""
What the calling user hears while the called user rings, INVITE mode, end to end: the real
daemon, Kamailio with digest auth as the sipX proxy, sipp phones, curl as the client.

B's 183 with SDP reaches A as a re-INVITE carrying B's media address (and B's 200 with the
same media connects at once, A's early answer going to B in the ACK); B's 180 without SDP
gets A a re-INVITE to the daemon's ringback tone, whose RTP arrives at the port A's phone
answered with, and stops when B answers or the call is deleted.
"""

from __future__ import annotations

import re
import select
import socket
import time

from tests.integration.e2e import curl, wait_for
from tests.integration.peers import free_port
from tests.integration.test_invite_mode import (
    both_connected,
    call_state,
    hang_up,
    media_port,
    next_version,
    over,
    post,
    sdp_of,
)
from tests.rtpwire import Rtp

MAX_PACKETS = 2000
"""RTP packets a test reads at most (40 s of ringback)."""


def ringback_setup(setup):
    """The daemon with its ringback streams on ports free for this test."""
    low = free_port(10)
    return setup(ringback_ports=f"{low}-{low + 9}", ringback_max_streams=4,
                 ringback_delay=0), low


class RtpListener:
    """The calling phone's media port: a UDP socket on loopback that collects RTP."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", free_port()))
        self.port = self.sock.getsockname()[1]
        self.packets: list[tuple[Rtp, tuple[str, int]]] = []

    def read(self, count: int, timeout: float = 15.0) -> list[tuple[Rtp, tuple[str, int]]]:
        """Wait (at most C{timeout} s) until C{count} packets have come; all so far."""
        deadline = time.monotonic() + timeout
        while len(self.packets) < min(count, MAX_PACKETS):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(self.packets)} RTP packets, not {count}, "
                                     f"within {timeout} s")
            if select.select([self.sock], [], [], left)[0]:
                data, addr = self.sock.recvfrom(2048)
                self.packets.append((Rtp(data), addr))
        return self.packets

    def close(self):
        self.sock.close()


def port_closed(port: int) -> bool:
    """Nothing listens on UDP C{port} on loopback any more (the kernel refuses a probe)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("127.0.0.1", port))
        probe.settimeout(0.5)
        try:
            probe.send(b"probe")
            probe.recv(64)
        except ConnectionRefusedError:
            return True
        except TimeoutError:
            return False
    return False


def test_a_183_with_sdp_reaches_the_caller_as_the_callees_media_and_its_200_connects(setup):
    s = setup()
    a = s.phone("user1", "im_caller")  # exactly two INVITEs: the black hole and B's media
    b = s.phone("user2", "invite_b_early_media", extra_args=("-d", "1000"))
    location = post(s)
    wait_for(lambda: both_connected(s, location))
    first, early = a.received("INVITE")[0], a.received("INVITE")[-1]
    # the far end's tones reach A: B's media address, port and codecs, in A's own session
    assert media_port(sdp_of(early)) == b.media_port
    assert re.search(rf"^m=audio {b.media_port} RTP/AVP 0 8\r?$", sdp_of(early), re.M)
    assert next_version(sdp_of(early), sdp_of(first))
    # ... before B answered: while B's far end played its tones
    assert a.times("received", "INVITE")[1] < b.times("sent", "SIP/2.0 200")[0]
    # B's 200 offered the same media: A's early answer went to B in the ACK
    assert media_port(sdp_of(b.received("ACK")[-1])) == a.media_port
    assert hang_up(s, location, a, b) == "ended"
    assert len(a.received("INVITE")) == 2


def test_a_180_gives_the_caller_the_ringback_tone_until_the_callee_answers(setup):
    s, low = ringback_setup(setup)
    phone = RtpListener()
    try:
        a = s.phone("user1", "im_caller_ringback", keys={"rtp_port": str(phone.port)})
        b = s.phone("user2", "invite_b_rings", extra_args=("-d", "3000"))
        location = post(s)
        heard = phone.read(25)  # half a second of it, while B rings
        assert call_state(s, location) == "ringing"
        ringback = a.received("INVITE")[1]
        offer = sdp_of(ringback)
        assert "a=sendonly" in offer and "c=IN IP4 127.0.0.1" in offer
        source = media_port(offer)
        assert low <= source <= low + 9 and source % 2 == 0
        assert {addr for _, addr in heard} == {("127.0.0.1", source)}
        packets = [p for p, _ in heard]
        assert {p.version for p in packets} == {2}
        assert {p.payload_type for p in packets} == {8}  # the codec A's phone chose: PCMA
        assert len({p.ssrc for p in packets}) == 1
        assert [p.sequence - packets[0].sequence for p in packets] == list(range(25))
        assert {len(p.payload) for p in packets} == {160}
        assert any(set(p.payload) != {0xD5} for p in packets)  # a tone, not silence
        # B answers: A gets B's offer, and the ringback's port is closed
        wait_for(lambda: both_connected(s, location))
        last = a.received("INVITE")[-1]
        assert media_port(sdp_of(last)) == b.media_port
        assert next_version(sdp_of(last), offer)
        wait_for(lambda: port_closed(source))
        assert media_port(sdp_of(b.received("ACK")[-1])) == a.media_port
        assert hang_up(s, location, a, b) == "ended"
    finally:
        phone.close()


def test_delete_while_the_caller_hears_ringback_cancels_the_callee_and_stops_the_tone(setup):
    s, _low = ringback_setup(setup)
    phone = RtpListener()
    try:
        a = s.phone("user1", "im_caller_ringback_hung_up", keys={"rtp_port": str(phone.port)})
        b = s.phone("user2", "caller_no_answer")
        location = post(s)
        phone.read(10)
        source = media_port(sdp_of(a.received("INVITE")[1]))
        code, _ = curl("-X", "DELETE", s.url(location))
        assert code == 200
        assert b.wait(20) == 0, b.errors()  # CANCEL, 487, ACK
        assert a.wait(20) == 0, a.errors()  # BYE
        assert 'Reason: SIP;cause=200;text="hangup"' in a.received("BYE")[0]
        wait_for(lambda: port_closed(source))
        assert wait_for(lambda: over(s, location)) == "failed"
    finally:
        phone.close()
