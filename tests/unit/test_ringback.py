"""The ringback tone: G.711 encoding, the cadences, and the bounded pool of RTP streams
on a Clock (what a phone receives, packet by packet)."""

from __future__ import annotations

import math

import pytest
from twisted.internet.task import Clock

from sipxcc.media import tones
from sipxcc.media.ringback import MAX_BIND_ATTEMPTS, MAX_BURST, PTIME, RingbackStreams
from tests.unit.udpfakes import FakeUDP, Rtp

PHONE = ("10.0.0.1", 4000)


def ulaw_to_linear(code: int) -> int:
    """ITU-T G.711 mu-law decoding, written out independently of the encoder."""
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def alaw_to_linear(code: int) -> int:
    """ITU-T G.711 A-law decoding, written out independently of the encoder."""
    a = code ^ 0x55
    t, segment = (a & 0x0F) << 4, (a & 0x70) >> 4
    t += 8 if segment == 0 else 0x108
    if segment > 1:
        t <<= segment - 1
    return t if a & 0x80 else -t


def power(samples: list[int], frequency: float) -> float:
    """Goertzel: the power of C{samples} (8 kHz) at C{frequency}."""
    coefficient = 2 * math.cos(2 * math.pi * frequency / tones.RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coefficient * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coefficient * s1 * s2


@pytest.mark.parametrize("encode, decode", [(tones.ulaw, ulaw_to_linear),
                                            (tones.alaw, alaw_to_linear)])
def test_every_g711_code_decodes_to_a_level_that_encodes_to_it_again(encode, decode):
    negative_zero = {0x7F} if encode is tones.ulaw else set()
    assert [code for code in range(256) if code not in negative_zero
            and encode(decode(code)) != code] == []


def test_g711_extremes_and_silence():
    assert (tones.ulaw(0), tones.ulaw(32767), tones.ulaw(-32768)) == (0xFF, 0x80, 0x00)
    assert (tones.alaw(0), tones.alaw(32767), tones.alaw(-32768)) == (0xD5, 0xAA, 0x2A)
    assert (tones.silence(tones.PCMU), tones.silence(tones.PCMA)) == (0xFF, 0xD5)


def test_the_north_american_cadence_is_440_and_480_hz_for_2_s_then_4_s_of_silence():
    audio = tones.period("us", tones.PCMU)
    assert len(audio) == 6 * tones.RATE
    on = [ulaw_to_linear(b) for b in audio[:2 * tones.RATE]]
    assert set(audio[2 * tones.RATE:]) == {0xFF}
    noise = power(on, 1000)
    assert power(on, 440) > 1000 * noise and power(on, 480) > 1000 * noise
    assert 2000 < max(on) < 6000  # about -19 dBm0 each: heard, not shouted


@pytest.mark.parametrize("tone, frequency, on_s, period_s", [("eu", 425, 1, 5),
                                                             ("uk", 400, 0.4, 3)])
def test_the_other_cadences(tone, frequency, on_s, period_s):
    audio = tones.period(tone, tones.PCMA)
    assert len(audio) == period_s * tones.RATE
    on = [alaw_to_linear(b) for b in audio[:int(on_s * tones.RATE)]]
    assert power(on, frequency) > 1000 * power(on, 1000)
    assert audio[-tones.RATE:] == bytes([0xD5]) * tones.RATE  # the last second is silence


def pool(max_streams=2, ports=(24000, 24009), taken=None, clock=None):
    udp = FakeUDP(taken)
    return RingbackStreams(clock or Clock(), udp, "127.0.0.1", ports, max_streams), udp


def packets(udp, port=None) -> list[Rtp]:
    found = []
    for bound in udp.ever:
        if port is None or bound.port == port:
            found += [Rtp(data) for data, _ in bound.written]
    return found


def test_a_playing_stream_sends_one_rtp_packet_each_20_ms_to_the_phone():
    clock = Clock()
    streams, udp = pool(clock=clock)
    stream = streams.open(lifetime=180)
    assert stream.port == 24000 and udp.bound[24000].interface == "127.0.0.1"
    assert packets(udp) == []  # nothing before the phone said where
    assert stream.play(*PHONE, 0)
    clock.pump([PTIME] * 50)
    sent = packets(udp)
    assert len(sent) == 51  # at 0, 20, ..., 1000 ms
    assert {addr for _, addr in udp.bound[24000].written} == {PHONE}
    assert all((p.version, p.padding, p.extension, p.csrc_count) == (2, 0, 0, 0) for p in sent)
    assert [p.marker for p in sent] == [True] + [False] * 50  # RFC 3551 §4.1: first packet
    assert {p.payload_type for p in sent} == {0} and {len(p.payload) for p in sent} == {160}
    assert len({p.ssrc for p in sent}) == 1
    first = sent[0]
    assert [p.sequence for p in sent] == [(first.sequence + n) & 0xFFFF for n in range(51)]
    assert [p.timestamp for p in sent] == [(first.timestamp + 160 * n) & 0xFFFFFFFF
                                           for n in range(51)]
    assert b"".join(p.payload for p in sent) == tones.period("us", 0)[:51 * 160]


def test_pcma_when_the_phone_chose_it_and_the_cadence_wraps_around():
    clock = Clock()
    streams, udp = pool(clock=clock)
    stream = streams.open(lifetime=180)
    stream.play(*PHONE, 8)
    clock.pump([PTIME] * 350)  # 7 s: once round the 6-s period
    audio = b"".join(p.payload for p in packets(udp))
    period = tones.period("us", 8)
    assert {p.payload_type for p in packets(udp)} == {8}
    assert audio[:len(period)] == period and audio[len(period):] == period[:len(audio)
                                                                            - len(period)]


def test_a_late_wake_up_sends_at_most_a_burst_and_skips_the_rest():
    clock = Clock()
    streams, udp = pool(clock=clock)
    stream = streams.open(lifetime=180)
    stream.play(*PHONE, 0)
    clock.advance(1.0)  # the reactor was busy for a whole second
    late = packets(udp)[1:]
    assert len(late) == MAX_BURST
    # sequence numbers run on (nothing lost on the wire); the timestamps show the gap
    assert [p.sequence - late[0].sequence for p in late] == list(range(MAX_BURST))
    assert late[-1].timestamp - packets(udp)[0].timestamp == 50 * 160
    clock.pump([PTIME] * 10)
    assert len(packets(udp)) == 1 + MAX_BURST + 10  # back to one a tick


def test_at_most_max_streams_at_once_and_a_closed_one_frees_its_place():
    streams, udp = pool(max_streams=2)
    first, second = streams.open(60), streams.open(60)
    assert (first.port, second.port) == (24000, 24002)
    assert streams.open(60) is None and streams.refused == 1
    assert sorted(udp.bound) == [24000, 24002]
    first.close()
    assert sorted(udp.bound) == [24002]
    third = streams.open(60)
    assert third is not None and third.port == 24004  # the next port, not the one freed
    assert streams.open(60) is None and streams.refused == 2
    first.close()  # closing twice changes nothing
    assert len(streams.streams) == 2


def test_ports_held_by_others_are_skipped_and_the_tries_are_bounded():
    streams, udp = pool(max_streams=4, ports=(24000, 24009), taken={24000, 24002})
    assert streams.open(60).port == 24004
    everything_taken, udp = pool(max_streams=40, ports=(24000, 24099),
                                 taken=set(range(24000, 24100)))
    assert everything_taken.open(60) is None
    assert udp.attempts == MAX_BIND_ATTEMPTS


def test_a_stream_closes_itself_at_its_lifetime_whether_or_not_it_plays():
    clock = Clock()
    streams, udp = pool(clock=clock)
    silent, playing = streams.open(lifetime=30), streams.open(lifetime=30)
    playing.play(*PHONE, 0)
    clock.pump([PTIME] * 1499)
    assert not playing.closed and not silent.closed
    clock.pump([PTIME] * 2)
    assert playing.closed and silent.closed and udp.bound == {}
    count = len(packets(udp))
    clock.pump([PTIME] * 10)
    assert len(packets(udp)) == count
    assert clock.getDelayedCalls() == []  # no tick left running


@pytest.mark.parametrize("address, port, payload_type", [
    ("0.0.0.0", 4000, 0), ("224.0.0.1", 4000, 0), ("255.255.255.255", 4000, 0),
    ("::", 4000, 0), ("10.0.0.1", 0, 0), ("10.0.0.1", 4000, 18), ("phone.example", 4000, 0),
])
def test_no_packet_goes_to_an_unusable_destination(address, port, payload_type):
    clock = Clock()
    streams, udp = pool(clock=clock)
    stream = streams.open(60)
    assert not stream.play(address, port, payload_type)
    clock.pump([PTIME] * 10)
    assert packets(udp) == []


def test_one_timer_serves_every_stream_and_stops_with_the_last():
    clock = Clock()
    streams, udp = pool(clock=clock)
    a, b = streams.open(60), streams.open(60)
    a.play(*PHONE, 0)
    b.play("10.0.0.2", 4002, 8)
    clock.pump([PTIME] * 5)
    assert len([call for call in clock.getDelayedCalls() if call.func == streams._tick]) == 1
    assert (len(packets(udp, a.port)), len(packets(udp, b.port))) == (6, 6)
    a.close()
    b.close()
    assert [call for call in clock.getDelayedCalls() if call.func == streams._tick] == []


def test_a_send_error_stops_that_stream_only():
    clock = Clock()
    streams, udp = pool(clock=clock)
    a, b = streams.open(60), streams.open(60)
    a.play(*PHONE, 0)
    b.play("10.0.0.2", 4002, 0)
    udp.bound[a.port].fail_with = OSError(101, "Network is unreachable")
    clock.pump([PTIME] * 3)
    assert a.closed and not b.closed
    assert len(packets(udp, b.port)) == 4


def test_stop_closes_every_stream():
    streams, udp = pool()
    streams.open(60), streams.open(60)
    streams.stop()
    assert udp.bound == {} and streams.streams == {}


def test_a_pool_without_streams_or_ports_or_address_gives_none():
    assert pool(max_streams=0)[0].open(60) is None
    udp = FakeUDP()
    assert RingbackStreams(Clock(), udp, "0.0.0.0", (24000, 24009), 2).open(60) is None
    assert udp.attempts == 0
    with pytest.raises(ValueError):
        RingbackStreams(Clock(), udp, "127.0.0.1", (24000, 24009), 2, tone="mars")
