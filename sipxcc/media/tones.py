"""
Ringback tones as G.711 audio (ITU-T G.711: PCMU, RTP payload type 0, and PCMA, type 8,
at 8000 samples a second; RFC 3551 §4.5.14).

A tone is a cadence: the sum of one or two sine waves, switched on and off in a fixed
pattern (ITU-T E.180 lists each country's). One whole period of it is encoded once per
codec and kept; a packet is a slice of it.
"""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

RATE = 8000
"""Samples a second (G.711)."""

PCMU = 0
PCMA = 8
PAYLOAD_TYPES = (PCMU, PCMA)
"""RFC 3551 static payload types of the codecs a tone can be encoded in."""

LEVEL = 2540
"""Peak of each sine, in 16-bit linear PCM: about -19 dBm0, the level ITU-T E.180 and
ANSI T1.401 give for each frequency of a ringback tone."""


class Cadence(NamedTuple):
    """Frequencies (Hz) sounded together, and the (on, off) milliseconds of one period."""

    frequencies: tuple[int, ...]
    pattern: tuple[tuple[int, int], ...]

    @property
    def period_ms(self) -> int:
        return sum(on + off for on, off in self.pattern)


CADENCES: dict[str, Cadence] = {
    # North America (ANSI T1.401, ITU-T E.180): 440 + 480 Hz, 2 s on, 4 s off
    "us": Cadence((440, 480), ((2000, 4000),)),
    # Europe (ETSI ES 201 970, the CEPT tone): 425 Hz, 1 s on, 4 s off
    "eu": Cadence((425,), ((1000, 4000),)),
    # United Kingdom: 400 + 450 Hz, 0.4 s on, 0.2 s off, 0.4 s on, 2 s off
    "uk": Cadence((400, 450), ((400, 200), (400, 2000))),
}


def ulaw(sample: int) -> int:
    """One 16-bit linear sample as a G.711 mu-law byte (ITU-T G.711 Table 2)."""
    value = sample >> 2  # 14 bits
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value, 8159) + 33  # clip, then the bias
    segment = max(0, value.bit_length() - 6)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def alaw(sample: int) -> int:
    """One 16-bit linear sample as a G.711 A-law byte (ITU-T G.711 Table 1)."""
    value = sample >> 3  # 13 bits
    mask = 0xD5
    if value < 0:
        value, mask = -value - 1, 0x55
    segment = max(0, value.bit_length() - 5)
    if segment >= 8:
        return 0x7F ^ mask
    mantissa = (value >> 1) if segment < 2 else (value >> segment)
    return ((segment << 4) | (mantissa & 0x0F)) ^ mask


_ENCODERS = {PCMU: ulaw, PCMA: alaw}


def silence(payload_type: int) -> int:
    """The byte of a zero sample in C{payload_type}'s encoding."""
    return _ENCODERS[payload_type](0)


@cache
def period(tone: str, payload_type: int) -> bytes:
    """One whole period of C{tone} (a key of L{CADENCES}) in C{payload_type} (PCMU or
    PCMA): 8 bytes a millisecond, 48,000 for the 6-s North American cadence."""
    cadence = CADENCES[tone]
    encode = _ENCODERS[payload_type]
    quiet = bytes([encode(0)])
    steps = [2 * math.pi * frequency / RATE for frequency in cadence.frequencies]
    out = bytearray()
    for on_ms, off_ms in cadence.pattern:
        start = len(out)
        for n in range(on_ms * RATE // 1000):
            t = start + n  # the phase runs on through the pattern: no click per burst
            out.append(encode(round(sum(LEVEL * math.sin(step * t) for step in steps))))
        out += quiet * (off_ms * RATE // 1000)
    return bytes(out)
