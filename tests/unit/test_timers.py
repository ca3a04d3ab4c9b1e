"""Fixed-delay timers: one reactor timer per delay, fired oldest first, cancellable."""

from __future__ import annotations

from twisted.internet.task import Clock

from sipxcc.timers import SLACK, Timers


def test_timers_fire_in_order_at_their_deadline_with_one_reactor_timer():
    clock, fired = Clock(), []
    timers = Timers(clock)
    timers.call_later(32, fired.append, "a")
    clock.advance(1)
    timers.call_later(32, fired.append, "b")
    timers.call_later(5, fired.append, "k")
    assert len(clock.getDelayedCalls()) == 2  # one per delay, not one per timer
    clock.advance(5)
    assert fired == ["k"]
    clock.advance(26)
    assert fired == ["k", "a"]
    clock.advance(1)
    assert fired == ["k", "a", "b"] and not clock.getDelayedCalls()


def test_cancelled_timers_do_not_fire_and_leave_nothing_behind():
    clock, fired = Clock(), []
    timers = Timers(clock)
    first = timers.call_later(32, fired.append, "a")
    clock.advance(1)
    second = timers.call_later(32, fired.append, "b")
    first.cancel()
    assert not first.active() and second.active()
    assert len(timers.fixed[32].queue) == 1  # a cancelled head is dropped at once
    clock.advance(31)
    assert fired == []  # the wake-up found nothing due and sleeps until "b"
    clock.advance(1)
    assert fired == ["b"] and not second.active()
    third = timers.call_later(32, fired.append, "c")
    third.cancel()
    assert not third.active() and not timers.fixed[32].live
    clock.advance(32)  # the one idle wake-up, then nothing is left
    assert fired == ["b"] and not clock.getDelayedCalls()


def test_cancelling_does_not_touch_the_reactor():
    clock = Clock()
    timers = Timers(clock)
    for _ in range(3):
        timers.call_later(0.5, print).cancel()
    assert len(clock.getDelayedCalls()) == 1  # one wake-up, however many timers came and went


def test_stop_cancels_everything():
    clock, fired = Clock(), []
    timers = Timers(clock)
    timers.call_later(32, fired.append, "a")
    timers.call_later(5, fired.append, "b")
    timers.stop()
    clock.advance(60)
    assert fired == [] and not clock.getDelayedCalls()


def test_expiry_timers_due_within_the_slack_share_one_wakeup():
    clock, fired = Clock(), []
    timers = Timers(clock)
    for n in range(5):
        timers.expire_later(32, fired.append, n)
        clock.advance(SLACK / 5)
    clock.advance(32 - SLACK)
    assert fired == []  # never early
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(SLACK)
    assert fired == [0, 1, 2, 3, 4]  # all in the one wake-up at the first deadline + SLACK
    assert not clock.getDelayedCalls()
