"""A second stop signal while shutting down is ignored, not a second reactor.stop()."""

from __future__ import annotations

import signal

from sipxcc.tap import stop_once_on_signals


class SignalledReactor:
    """Twisted's signal handlers as they are: each one schedules reactor.stop()."""

    def __init__(self):
        self.stops_scheduled: list[int] = []

    def sigInt(self, number, frame=None):
        self.stops_scheduled.append(number)

    def sigTerm(self, number, frame=None):
        self.stops_scheduled.append(number)

    def sigBreak(self, number, frame=None):
        self.stops_scheduled.append(number)


def test_sigterm_then_sigint_schedules_one_stop():
    reactor = SignalledReactor()
    stop_once_on_signals(reactor)
    reactor.sigTerm(signal.SIGTERM)
    reactor.sigInt(signal.SIGINT)
    reactor.sigInt(signal.SIGINT)
    assert reactor.stops_scheduled == [signal.SIGTERM]


def test_a_single_sigint_still_stops_the_reactor():
    reactor = SignalledReactor()
    stop_once_on_signals(reactor)
    reactor.sigInt(signal.SIGINT)
    assert reactor.stops_scheduled == [signal.SIGINT]
