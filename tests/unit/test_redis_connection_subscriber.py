"""The Redis subscription on the reactor, against a stand-in Redis (tests/unit/redisfakes.py:
real RespProtocols, bytes in memory): only published messages on its channels reach the
handler, in order, whatever else a subscribed connection is sent and even between a PING
and its pong; a handler that raises is logged and the next message still comes; a message
larger than the bound is dropped, counted and warned of on the first and every 1000th;
traffic spares the keep-alive PING and a PING left unanswered closes the connection; a
lost or refused subscription is made again after back-off delays, not once stopped;
stopping fires at the close or after its bound."""

from __future__ import annotations

import pytest
from twisted.internet import error, task

from sipxcc.calls import redis_client
from sipxcc.calls.redis_client import KEEPALIVE, MAX_MESSAGE, SOCKET_TIMEOUT
from sipxcc.calls.redis_protocol import RedisError
from tests.unit.redisfakes import (
    FakeRedis,
    Log,
    Simple,
    answer_as_subscribed_redis,
    outcomes,
    resp,
    subscription,
)

CHANNEL = "sipxcc:cmd:a"
RESET = "Connection to the other side was lost in a non-clean fashion: Connection reset by peer."
REFUSED = "Connection was refused by other side: Connection refused."


@pytest.fixture
def log():
    with Log.capture() as made:
        yield made


def subscribed(**kw):
    """A clock, a stand-in Redis, a subscription to L{CHANNEL} on it (subscribed) and the
    list of what its handler got."""
    clock = task.Clock()
    server = FakeRedis(clock, answer_as_subscribed_redis)
    sub, got = subscription(clock, server, **kw)
    sub.start()
    assert sub.up and server.writes == [[("SUBSCRIBE", CHANNEL)]]
    return clock, server, sub, got


def message(data: bytes, channel: str = CHANNEL) -> bytes:
    return resp([b"message", channel.encode(), data])


def test_only_published_messages_reach_the_handler_in_order(log):
    clock, server, sub, got = subscribed()
    protocol = server.connections[0]
    protocol.dataReceived(
        resp([b"subscribe", CHANNEL.encode(), 1])  # a confirmation no command is owed
        + resp([b"pong", b""])
        + resp([b"pmessage", b"sipxcc:*", CHANNEL.encode(), b"by pattern"])
        + resp([b"message", CHANNEL.encode()])  # not a message's shape
        + resp([b"message", CHANNEL.encode(), 5])
        + resp([b"message", 5, b"channel not bytes"])
        + resp([b"smessage", CHANNEL.encode(), b"sharded"])  # (SSUBSCRIBE's kind)
        + resp(b"just bytes")
        + message(b"one"))
    assert server.publish(CHANNEL, b"two") == 1
    assert got == [(CHANNEL.encode(), b"one"), (CHANNEL.encode(), b"two")]
    assert sub.up and protocol.transport.closing is None
    sub.stop()
    assert log.warnings() == [] and log.failures() == []


def test_a_message_between_a_ping_and_its_pong_reaches_the_handler_and_the_pong_the_ping(log):
    clock, server, sub, got = subscribed()
    protocol = server.connections[0]
    server.answering = False
    clock.advance(KEEPALIVE)
    assert server.sent() == [[("PING",)]] and protocol.oldest == KEEPALIVE
    server.publish(CHANNEL, b"meanwhile")
    assert got == [(CHANNEL.encode(), b"meanwhile")] and protocol.oldest == KEEPALIVE
    server.release()  # [b"pong", b""]
    assert protocol.oldest is None and protocol.transport.closing is None and sub.up
    assert log.warnings() == [] and log.failures() == []


def test_a_handler_that_raises_is_logged_and_the_next_message_still_arrives(log):
    clock = task.Clock()
    server = FakeRedis(clock, answer_as_subscribed_redis)
    got = []

    def handler(channel, data):
        got.append(data)
        if data == b"bad":
            raise ValueError("the handler's bug")
    sub = redis_client.RedisSubscription(clock, "redis://h/0",
                                         (CHANNEL,), handler, connect=server.connect)
    sub.start()
    server.connections[0].dataReceived(message(b"bad") + message(b"good"))
    assert got == [b"bad", b"good"]
    assert log.failures() == ["a Redis message handler failed"]
    [logged] = [event["log_failure"].value for event in log.events if "log_failure" in event]
    assert isinstance(logged, ValueError) and str(logged) == "the handler's bug"
    assert sub.up and server.connections[0].transport.closing is None


@pytest.mark.parametrize("size, delivered", [(MAX_MESSAGE, True), (MAX_MESSAGE + 1, False)])
def test_a_message_is_handed_over_up_to_64_kib_and_dropped_beyond(log, size, delivered):
    assert MAX_MESSAGE == 64 * 1024
    clock, server, sub, got = subscribed()
    server.publish(CHANNEL, b"x" * size)
    assert (len(got), sub.dropped) == ((1, 0) if delivered else (0, 1))
    assert len(log.warnings()) == (0 if delivered else 1)


def test_drops_beyond_the_bound_are_counted_and_warned_of_on_the_first_and_every_1000th(log):
    clock, server, sub, got = subscribed(max_message=3)
    server.connections[0].dataReceived(
        message(b"abc") + message(b"abcd") * 999 + message(b"") + message(b"abcde") * 1001)
    assert got == [(CHANNEL.encode(), b"abc"), (CHANNEL.encode(), b"")]
    assert sub.dropped == 2000 and sub.up
    assert log.warnings() == [
        "a Redis message of 4 bytes on sipxcc:cmd:a dropped (larger than 3): 1 dropped so far",
        "a Redis message of 5 bytes on sipxcc:cmd:a dropped (larger than 3): 1000 dropped "
        "so far",
        "a Redis message of 5 bytes on sipxcc:cmd:a dropped (larger than 3): 2000 dropped "
        "so far"]
    assert log.failures() == []


def test_traffic_spares_the_keepalive_ping_and_an_idle_period_does_not(log):
    clock, server, sub, got = subscribed()
    clock.advance(KEEPALIVE / 2)
    server.publish(CHANNEL, b"alive")
    clock.advance(KEEPALIVE / 2)
    assert server.pings() == 0  # a message came: the connection is alive
    clock.advance(KEEPALIVE)
    assert server.pings() == 1  # nothing for a period: checked
    clock.advance(KEEPALIVE)
    assert server.pings() == 2


def test_a_ping_unanswered_for_the_reply_timeout_closes_the_connection_and_subscribes_again(
        log):
    clock, server, sub, got = subscribed()
    server.answering = False  # Redis (or the network to it) went silent
    clock.advance(KEEPALIVE)  # a PING written, waiting
    wire = server.connections[0].transport
    clock.advance(SOCKET_TIMEOUT - KEEPALIVE)
    assert wire.closing is None and sub.up  # waited 4 s of 5
    clock.advance(KEEPALIVE)
    assert wire.closing == "abort"
    server.close()
    assert not sub.up and sub.last_error == "no reply within 5.0 s"
    assert log.warnings() == [
        "lost the Redis subscription (no reply within 5.0 s); subscribing again in 0.2 s"]
    server.answering = True
    clock.advance(redis_client.INITIAL_DELAY)
    assert sub.up and len(server.connections) == 2
    assert server.connections[1].transport.hello == [("SUBSCRIBE", CHANNEL)]
    assert server.publish(CHANNEL, b"again") == 1 and got == [(CHANNEL.encode(), b"again")]
    assert log.failures() == []


def test_a_lost_subscription_is_made_again_after_back_off_delays(log):
    clock, server, sub, got = subscribed()
    server.reachable = False
    clock.advance(KEEPALIVE)  # the keep-alive PING finds the connection gone
    assert not sub.up and sub.last_error == RESET
    for delay in (0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0):  # doubling, at most 5 s
        (attempt,) = clock.getDelayedCalls()
        assert attempt.getTime() - clock.seconds() == pytest.approx(delay)
        before = server.attempts
        clock.advance(attempt.getTime() - clock.seconds())
        assert server.attempts == before + 1, delay
    assert log.warnings() == [
        f"lost the Redis subscription ({RESET}); subscribing again in 0.2 s",
        *(f"cannot subscribe on Redis at 127.0.0.1:6379 ({REFUSED}); retrying in {d} s"
          for d in (0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0))]
    server.reachable = True
    clock.advance(5.0)
    assert sub.up and server.connections[1].transport.hello == [("SUBSCRIBE", CHANNEL)]
    server.publish(CHANNEL, b"back")
    assert got == [(CHANNEL.encode(), b"back")]
    server.reachable = False  # lost again: the back-off starts from its first delay
    clock.advance(KEEPALIVE)  # (the message spared this period's PING)
    assert sub.up
    clock.advance(KEEPALIVE)
    assert log.warnings()[-1] == (
        f"lost the Redis subscription ({RESET}); subscribing again in 0.2 s")
    assert log.failures() == []


@pytest.mark.parametrize("refusal, error", [
    ([RedisError("WRONGPASS invalid username-password pair or user is disabled."),
      RedisError("NOAUTH Authentication required.")],  # one error for the whole SUBSCRIBE
     "WRONGPASS invalid username-password pair or user is disabled."),
    ([Simple("OK"), RedisError("NOPERM this user has no permissions to access one of the "
                               "channels used as arguments")],
     "NOPERM this user has no permissions to access one of the channels used as arguments"),
])
def test_a_refused_login_or_subscribe_leaves_it_down_with_redis_reason_and_it_tries_again(
        log, refusal, error):
    clock = task.Clock()
    server = FakeRedis(clock, lambda commands: refusal)
    sub, got = subscription(clock, server, "redis://:wrong@127.0.0.1:6379/0")
    sub.start()
    assert not sub.up and sub.last_error == error
    assert server.connections[0].transport.closing == "lose"
    assert log.warnings() == [
        f"cannot subscribe on Redis at 127.0.0.1:6379 ({error}); retrying in 0.2 s"]
    server.close()  # its close changes nothing
    server.answer = answer_as_subscribed_redis
    clock.advance(redis_client.INITIAL_DELAY)
    assert sub.up and server.attempts == 2 and len(log.warnings()) == 1


def test_stopped_while_waiting_to_subscribe_again_it_does_not(log):
    clock = task.Clock()
    server = FakeRedis(clock, answer_as_subscribed_redis)
    server.reachable = False
    sub, _ = subscription(clock, server)
    sub.start()
    assert server.attempts == 1 and clock.getDelayedCalls() != []
    assert outcomes([sub.stop()]) == [None]
    assert clock.getDelayedCalls() == []
    server.reachable = True
    clock.advance(60)
    assert server.attempts == 1 and not sub.up


def test_a_subscription_breaking_after_the_stop_is_not_made_again_and_hands_nothing_over(log):
    clock, server, sub, got = subscribed()
    stopped = outcomes([sub.stop()])
    wire = server.connections[0].transport
    assert wire.closing == "lose" and not sub.up and stopped == []
    server.connections[0].dataReceived(message(b"late"))  # read before the close
    assert got == []
    server.close(error.ConnectionLost("Connection reset by peer"))
    assert stopped == [None] and clock.getDelayedCalls() == []
    clock.advance(60)
    assert server.attempts == 1
    assert outcomes([sub.stop()]) == [None]  # twice is harmless
    assert log.warnings() == [] and log.failures() == []


@pytest.mark.parametrize("bound", [redis_client.STOP_TIMEOUT, 0.5])
def test_stop_fires_after_its_bound_when_the_connection_does_not_close_and_aborts_it(
        log, bound):
    kw = {} if bound == redis_client.STOP_TIMEOUT else {"stop_timeout": bound}
    clock, server, sub, got = subscribed(**kw)
    stopped = outcomes([sub.stop()])
    wire = server.connections[0].transport
    clock.advance(bound - 0.001)
    assert stopped == [] and wire.closing == "lose"
    clock.advance(0.001)
    assert stopped == [None] and wire.closing == "abort"
    assert log.warnings() == [
        f"the Redis subscription did not close within {bound} s; aborted"]
    server.close()  # the abort's connectionLost: nothing more happens
    assert clock.getDelayedCalls() == [] and server.attempts == 1
    assert log.failures() == []


def test_a_subscribe_redis_never_answers_is_given_up_on_after_the_reply_timeout(log):
    clock = task.Clock()
    server = FakeRedis(clock, answer_as_subscribed_redis)
    server.answering = False
    sub, _ = subscription(clock, server)
    sub.start()
    clock.advance(SOCKET_TIMEOUT - 0.001)
    assert server.connections[0].transport.closing is None
    clock.advance(0.001)
    assert server.connections[0].transport.closing == "abort"
    server.close()
    assert not sub.up and sub.last_error == "Redis connection lost: no reply within 5.0 s"
    server.answering = True
    clock.advance(redis_client.INITIAL_DELAY)
    assert sub.up and server.attempts == 2
