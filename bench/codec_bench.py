"""
Micro-benchmark of the SIP codec: microseconds per parse, serialize and both, for a
typical ~600-byte INVITE with SDP. Run: .venv/bin/python bench/codec_bench.py [--number N]
"""

import argparse
import timeit

from sipxcc.sip.framing import StreamParser, parse_datagram

SDP = (b"v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\ns=-\r\n"
       b"c=IN IP4 pc33.atlanta.example.com\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0 8 101\r\n"
       b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, REFER, NOTIFY, OPTIONS\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)


def per_call_us(func, number: int) -> float:
    """Best of 5 runs, in microseconds per call."""
    return min(timeit.repeat(func, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20000)
    number = parser.parse_args().number
    message = parse_datagram(INVITE)
    stream = StreamParser(lambda m: None)
    print(f"INVITE of {len(INVITE)} bytes, best of 5 x {number}")
    print(f"parse_datagram        {per_call_us(lambda: parse_datagram(INVITE), number):7.2f} µs")
    print(f"to_bytes              {per_call_us(message.to_bytes, number):7.2f} µs")
    print(f"parse + to_bytes      "
          f"{per_call_us(lambda: parse_datagram(INVITE).to_bytes(), number):7.2f} µs")
    print(f"StreamParser.feed     {per_call_us(lambda: stream.feed(INVITE), number):7.2f} µs")
    print(f"parse + branch/tags   "
          f"{per_call_us(lambda: _touch(parse_datagram(INVITE)), number):7.2f} µs")


def _touch(message) -> None:
    _ = (message.branch, message.from_tag, message.to_tag, message.cseq)


if __name__ == "__main__":
    main()
