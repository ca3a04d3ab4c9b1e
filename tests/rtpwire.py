"""Reading RTP packets (RFC 3550 §5.1) by their bytes alone, for the unit and integration
tests of the ringback tone."""

from __future__ import annotations

import struct


class Rtp:
    """One RTP packet as the phone reads it (RFC 3550 §5.1)."""

    def __init__(self, datagram: bytes):
        first, second, self.sequence, self.timestamp, self.ssrc = struct.unpack(
            "!BBHII", datagram[:12])
        self.version = first >> 6
        self.padding, self.extension, self.csrc_count = first & 0x20, first & 0x10, first & 0x0F
        self.marker = bool(second & 0x80)
        self.payload_type = second & 0x7F
        self.payload = datagram[12:]
