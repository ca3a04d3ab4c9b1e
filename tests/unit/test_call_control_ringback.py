"""CallControl's [ringback] section: INVITE-mode calls get a pool of tone streams on the SIP
address, within the configured ports and count, on the daemon's clock; none without it."""

from __future__ import annotations

from sipxcc.calls.call import CallRequest
from sipxcc.config import RingbackConfig
from tests.unit.test_call_control import AGENT, control


def invite_call(cc):
    return cc.registry.place(CallRequest(AGENT, "user1@sipx.test", "user2@sipx.test",
                                         method="INVITE"))


def test_the_ringback_section_gives_invite_calls_its_pool_of_tone_streams():
    reactor, cc = control(ringback=RingbackConfig(max_streams=1, ports=(24011, 24015),
                                                  delay=3, tone="uk"))
    cc.listen()
    pool = invite_call(cc).flow.ringback
    assert (pool.delay, pool.tone) == (3, "uk")
    bound = len(reactor.listened)
    stream = pool.open(10)
    assert stream.port == 24012  # the first even port of the range (RFC 3550 §11)
    [(kind, port, interface, *_)] = reactor.listened[bound:]
    assert (kind, port, interface) == ("UDP", 24012, "192.0.2.10")  # from the SIP address
    assert pool.open(10) is None  # max_streams
    reactor.advance(10)  # the stream's lifetime runs on the daemon's clock
    assert pool.streams == {} and pool.open(10) is not None


def test_without_a_ringback_section_or_with_no_streams_a_caller_hears_no_tone():
    for kw in ({}, {"ringback": RingbackConfig(max_streams=0)}):
        _, cc = control(**kw)
        cc.listen()
        assert invite_call(cc).flow.ringback is None
