"""RESP on the reactor (sipxcc/calls/redis_protocol.py), bytes fed by hand: a group of
commands is one write and gets its replies in order, however the bytes are cut; groups in
flight each get their own; an error reply takes its command's place; a reply Redis did
not owe or bytes that are not RESP close the connection; a lost connection fails every
group waiting and tells its owner once; what cannot be sent fails at once without
disturbing the groups after it; a failed TLS handshake is told in one line; and the
endpoint is TCP to the URL's host and port, over TLS verified with the CA file and the
host's name. Subscribed (RESP2, C{on_push}): a SUBSCRIBE gets one confirmation per channel
(an error reply is its whole answer), a message is pushed whenever it comes, even between a
PING and its pong, and a reply owed to no command is pushed rather than fatal."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import redis
from OpenSSL import SSL
from service_identity.exceptions import DNSMismatch, IPAddressMismatch, VerificationError
from twisted.internet import error
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from sipxcc.calls import redis_protocol
from sipxcc.calls.errors import RegistryUnavailable
from sipxcc.calls.redis_protocol import (
    ConnectionLost,
    RedisError,
    RespProtocol,
    describe,
    owed,
)
from tests.unit.redisfakes import outcomes


class Recorded(StringTransport):
    """Each write kept apart; closing recorded (C{closing}), C{connectionLost} left to
    the test (a reactor calls it later)."""

    def __init__(self):
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = None

    def write(self, data):
        self.writes.append(data)

    def loseConnection(self):
        self.closing = self.closing or "lose"

    def abortConnection(self):
        self.closing = "abort"


def connected(clock=None):
    """A protocol on a L{Recorded} transport; the list of what C{on_lost} heard."""
    lost = []
    protocol = RespProtocol(clock or Clock(), lost.append)
    transport = Recorded()
    protocol.makeConnection(transport)
    return protocol, transport, lost


REPLIES = (b"+OK\r\n:7\r\n$1\r\nv\r\n*2\r\n$5\r\nstate\r\n$7\r\nringing\r\n$-1\r\n"
           b"$0\r\n\r\n*0\r\n")
ANSWERS = [b"OK", 7, b"v", [b"state", b"ringing"], None, b"", []]


def test_a_group_is_one_write_of_resp_arrays_and_fires_with_its_replies_in_order():
    protocol, transport, _ = connected()
    got = outcomes([protocol.send([("SET", "k", "v"), ("INCR", "n"), ("GET", "k"),
                                   ("HGETALL", "h"), ("GET", "none"), ("GET", "empty"),
                                   ("LRANGE", "l", 0, -1)])])
    assert transport.writes == [
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n"
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$7\r\nHGETALL\r\n$1\r\nh\r\n"
        b"*2\r\n$3\r\nGET\r\n$4\r\nnone\r\n*2\r\n$3\r\nGET\r\n$5\r\nempty\r\n"
        b"*4\r\n$6\r\nLRANGE\r\n$1\r\nl\r\n$1\r\n0\r\n$2\r\n-1\r\n"]
    assert got == []
    protocol.dataReceived(REPLIES)
    # Redis' own replies: a simple string as bytes, an int, a nil as None, lists
    assert got == [ANSWERS]
    assert transport.closing is None


def test_arguments_go_out_as_redis_py_encodes_them():
    protocol, transport, _ = connected()
    protocol.send([("SET", b"\xff\x00", 1.5), ("SET", "caf\u00e9", 60)])
    assert transport.writes == [
        b"*3\r\n$3\r\nSET\r\n$2\r\n\xff\x00\r\n$3\r\n1.5\r\n"
        b"*3\r\n$3\r\nSET\r\n$5\r\ncaf\xc3\xa9\r\n$2\r\n60\r\n"]


@pytest.mark.parametrize("cut", range(1, len(REPLIES)))
def test_replies_cut_anywhere_into_two_chunks_are_put_together(cut):
    protocol, _, _ = connected()
    got = outcomes([protocol.send([("C",)] * len(ANSWERS))])
    protocol.dataReceived(REPLIES[:cut])
    assert got == []  # the last reply is not complete yet
    protocol.dataReceived(REPLIES[cut:])
    assert got == [ANSWERS]


def test_replies_fed_one_byte_at_a_time_fire_the_group_on_its_last_byte():
    protocol, transport, _ = connected()
    got = outcomes([protocol.send([("C",)] * len(ANSWERS))])
    for n in range(len(REPLIES) - 1):
        protocol.dataReceived(REPLIES[n:n + 1])
    assert got == []
    protocol.dataReceived(REPLIES[-1:])
    assert got == [ANSWERS] and transport.closing is None


def test_groups_in_flight_each_get_their_own_replies_and_oldest_follows_them():
    clock = Clock()
    protocol, transport, _ = connected(clock)
    assert protocol.oldest is None
    clock.advance(10)
    first = outcomes([protocol.send([("GET", "a"), ("GET", "b")])])
    clock.advance(1)
    second = outcomes([protocol.send([("GET", "c")])])
    clock.advance(1)
    third = outcomes([protocol.send([("GET", "d"), ("GET", "e"), ("GET", "f")])])
    assert len(transport.writes) == 3  # one write per group
    assert protocol.oldest == 10
    protocol.dataReceived(b"$1\r\na\r\n")
    assert (first, second, third) == ([], [], []) and protocol.oldest == 10
    protocol.dataReceived(b"$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n")
    assert first == [[b"a", b"b"]] and second == [[b"c"]] and third == []
    assert protocol.oldest == 12
    protocol.dataReceived(b"$1\r\ne\r\n$1\r\nf\r\n")
    assert third == [[b"d", b"e", b"f"]] and protocol.oldest is None


def test_an_error_reply_takes_its_commands_place_and_the_group_still_fires():
    protocol, transport, _ = connected()
    got = outcomes([protocol.send([("SET", "k", "v"), ("GET",), ("INCR", "k"),
                                   ("EVAL", "x", 0)])])
    protocol.dataReceived(b"+OK\r\n-ERR wrong number of arguments for 'get' command\r\n"
                          b"-ERR value is not an integer or out of range\r\n"
                          b"*2\r\n:1\r\n-ERR inside\r\n")
    [replies] = got
    assert replies[0] == b"OK"
    assert type(replies[1]) is RedisError
    assert str(replies[1]) == "ERR wrong number of arguments for 'get' command"
    assert str(replies[2]) == "ERR value is not an integer or out of range"
    assert replies[3][0] == 1 and str(replies[3][1]) == "ERR inside"
    assert transport.closing is None  # an error reply is a reply


def test_a_reply_with_nothing_waiting_aborts_the_connection():
    protocol, transport, lost = connected()
    protocol.dataReceived(b"+OK\r\n")
    assert transport.closing == "abort"
    protocol.connectionLost(Failure(error.ConnectionAborted()))
    assert lost == ["Redis sent a reply to no command"]


def test_one_reply_too_many_after_a_group_aborts_once_the_group_has_its_own():
    protocol, transport, lost = connected()
    got = outcomes([protocol.send([("GET", "a")])])
    protocol.dataReceived(b"$1\r\na\r\n$1\r\nb\r\n")
    assert got == [[b"a"]] and transport.closing == "abort"
    protocol.connectionLost(Failure(error.ConnectionAborted()))
    assert lost == ["Redis sent a reply to no command"]


def test_bytes_that_are_not_resp_abort_the_connection_and_fail_what_waits():
    protocol, transport, lost = connected()
    got = outcomes([protocol.send([("GET", "a"), ("GET", "b")])])
    protocol.dataReceived(b"$1\r\na\r\n?junk\r\n")
    assert got == [] and transport.closing == "abort"
    protocol.connectionLost(Failure(error.ConnectionAborted()))
    why = 'Redis sent something that is not RESP: Protocol error, got "?" as reply type byte'
    assert lost == [why]
    assert got[0].check(ConnectionLost) and str(got[0].value) == f"Redis connection lost: {why}"


def test_a_reply_up_to_the_bound_is_read_and_one_byte_more_unanswered_aborts():
    protocol, transport, lost = connected()
    protocol.max_reply = 20
    got = outcomes([protocol.send([("GET", "a")]), protocol.send([("GET", "b")])])
    value = b"x" * 13
    whole = b"$13\r\n" + value + b"\r\n"  # 20 bytes
    for byte in range(len(whole)):
        protocol.dataReceived(whole[byte:byte + 1])
    assert got == [[value]] and transport.closing is None
    protocol.dataReceived(b"$16\r\n" + b"x" * 15)  # 20 bytes, the reply not complete
    assert transport.closing is None
    protocol.dataReceived(b"x")  # 21
    assert transport.closing == "abort"
    protocol.connectionLost(Failure(error.ConnectionAborted()))
    assert lost == ["Redis sent a reply larger than 20 bytes"]
    assert str(got[1].value) == "Redis connection lost: Redis sent a reply larger than 20 bytes"


def test_the_reply_bound_is_64_mib_by_default():
    protocol, _, _ = connected()
    assert protocol.max_reply == redis_protocol.MAX_REPLY_BYTES == 64 * 1024 * 1024


def test_a_lost_connection_tells_its_owner_once_then_fails_every_group_waiting():
    order = []
    protocol = RespProtocol(Clock(), lambda why: order.append(("on_lost", why)))
    transport = Recorded()
    protocol.makeConnection(transport)
    answered = outcomes([protocol.send([("GET", "a")])])
    first = protocol.send([("GET", "b"), ("GET", "c")])
    second = protocol.send([("GET", "d")])
    for name, d in (("first", first), ("second", second)):
        d.addErrback(lambda failure, name=name: order.append((name, failure)))
    closed = outcomes([protocol.closed])
    protocol.dataReceived(b"$1\r\na\r\n$1\r\nb\r\n")  # the first group half answered
    assert answered == [[b"a"]] and closed == []
    protocol.connectionLost(Failure(error.ConnectionDone()))
    assert [entry[0] for entry in order] == ["on_lost", "first", "second"]
    assert order[0] == ("on_lost", "Connection was closed cleanly.")
    for _, failure in order[1:]:
        assert failure.check(ConnectionLost) and isinstance(failure.value, RegistryUnavailable)
        assert str(failure.value) == "Redis connection lost: Connection was closed cleanly."
    assert closed == [None] and protocol.lost and protocol.oldest is None


def test_after_the_loss_a_send_fails_at_once_and_writes_nothing():
    protocol, transport, lost = connected()
    protocol.connectionLost(Failure(error.ConnectionLost("Connection reset by peer")))
    assert lost == ["Connection to the other side was lost in a non-clean fashion: "
                    "Connection reset by peer."]
    got = outcomes([protocol.send([("GET", "a")])])
    assert got[0].check(ConnectionLost)
    assert str(got[0].value) == "the Redis connection is closed"
    assert transport.writes == [] and protocol.oldest is None
    unconnected = outcomes([RespProtocol(Clock()).send([("GET", "a")])])
    assert str(unconnected[0].value) == "the Redis connection is closed"


def test_without_an_owner_a_lost_connection_still_fails_what_waits():
    protocol = RespProtocol(Clock())
    protocol.makeConnection(Recorded())
    got = outcomes([protocol.send([("GET", "a")])])
    protocol.connectionLost(Failure(error.ConnectionDone()))
    assert got[0].check(ConnectionLost)


def test_a_group_of_no_command_fires_at_once_writes_nothing_and_owes_nothing():
    protocol, transport, _ = connected()
    assert outcomes([protocol.send([])]) == [[]]
    assert transport.writes == [] and protocol.oldest is None
    got = outcomes([protocol.send([("PING",)])])
    protocol.dataReceived(b"+PONG\r\n")
    assert got == [[b"PONG"]] and transport.closing is None


@pytest.mark.parametrize("bad, kind, text", [
    (None, redis.DataError, "Invalid input of type: 'NoneType'. Convert to a bytes, string, "
                            "int or float first."),
    ("\udcff", UnicodeEncodeError, "'utf-8' codec can't encode character '\\udcff' in "
                                   "position 0: surrogates not allowed"),
])
def test_a_command_that_cannot_be_encoded_fails_its_send_and_the_next_group_gets_its_replies(
        bad, kind, text):
    protocol, transport, _ = connected()
    refused = outcomes([protocol.send([("GET", "a"), ("SET", "k", bad)])])
    assert refused[0].check(kind) and str(refused[0].value) == text
    assert transport.writes == [] and protocol.oldest is None
    got = outcomes([protocol.send([("GET", "k")])])
    protocol.dataReceived(b"$1\r\nv\r\n")
    assert got == [[b"v"]] and transport.closing is None


# --- why a connection closed, as the operator reads it --------------------------------------


def test_a_certificate_that_does_not_chain_to_the_ca_is_told_in_one_line():
    reason = Failure(SSL.Error([("SSL routines", "", "certificate verify failed")]))
    assert describe(reason) == "TLS handshake failed: certificate verify failed"
    two = Failure(SSL.Error([("SSL routines", "tls_process_server_certificate",
                              "certificate verify failed"), ("SSL routines", "", "x")]))
    assert describe(two) == "TLS handshake failed: certificate verify failed; x"


def test_a_certificate_for_another_name_says_which_name_it_was_not_for():
    address = IPAddressMismatch(mismatched_id=SimpleNamespace(ip="127.0.0.1"))
    assert describe(Failure(VerificationError(errors=[address]))) == (
        "TLS handshake failed: the certificate is not for 127.0.0.1")
    name = DNSMismatch(mismatched_id=SimpleNamespace(hostname=b"redis.example"))
    assert describe(Failure(VerificationError(errors=[name, address]))) == (
        "TLS handshake failed: the certificate is not for redis.example, 127.0.0.1")


def test_other_reasons_are_twisteds_own_text():
    assert describe(Failure(error.ConnectionDone())) == "Connection was closed cleanly."
    assert describe(Failure(SSL.Error("odd"))) == "odd"  # not OpenSSL's list of reasons
    assert describe(Failure(VerificationError(errors=[]))) == "VerificationError(errors=[])"


def test_the_connection_lost_by_a_tls_failure_fails_its_groups_with_that_line():
    protocol, _, lost = connected()
    got = outcomes([protocol.send([("PING",)])])
    protocol.connectionLost(Failure(SSL.Error([("SSL routines", "",
                                                "certificate verify failed")])))
    assert lost == ["TLS handshake failed: certificate verify failed"]
    assert str(got[0].value) == (
        "Redis connection lost: TLS handshake failed: certificate verify failed")


# --- the endpoint -------------------------------------------------------------------------


class Recorder:
    """Stands for Twisted's endpoint constructors and sipxcc.tls.client_options."""

    def __init__(self, monkeypatch):
        self.calls = []
        monkeypatch.setattr(redis_protocol.endpoints, "HostnameEndpoint", self.tcp)
        monkeypatch.setattr(redis_protocol.endpoints, "wrapClientTLS", self.tls)
        monkeypatch.setattr("sipxcc.tls.client_options", self.options)

    def tcp(self, reactor, host, port, timeout):
        self.calls.append(("tcp", reactor, host, port, timeout))
        return "tcp endpoint"

    def tls(self, options, wrapped):
        self.calls.append(("tls", options, wrapped))
        return "tls endpoint"

    def options(self, host, ca_file):
        self.calls.append(("options", host, ca_file))
        return "tls options"


def test_without_tls_the_endpoint_is_tcp_to_the_host_and_port_within_the_timeout(monkeypatch):
    made, clock = Recorder(monkeypatch), Clock()
    assert redis_protocol.endpoint(clock, "10.0.0.7", 6390, tls=False, ca_file="/ca.pem",
                                   timeout=5.0) == "tcp endpoint"
    assert made.calls == [("tcp", clock, "10.0.0.7", 6390, 5.0)]


def test_over_tls_the_server_is_verified_with_the_ca_file_under_the_hosts_name(monkeypatch):
    made, clock = Recorder(monkeypatch), Clock()
    assert redis_protocol.endpoint(clock, "redis.example", 6380, tls=True,
                                   ca_file="/etc/sipxcc/ca.pem", timeout=5.0) == "tls endpoint"
    assert made.calls == [("tcp", clock, "redis.example", 6380, 5.0),
                          ("options", "redis.example", "/etc/sipxcc/ca.pem"),
                          ("tls", "tls options", "tcp endpoint")]



def test_an_owner_that_raises_on_the_loss_does_not_leave_the_groups_waiting():
    def broken(why):
        raise ValueError("the owner's bug")
    protocol = RespProtocol(Clock(), broken)
    protocol.makeConnection(Recorded())
    got = outcomes([protocol.send([("GET", "a")])])
    closed = outcomes([protocol.closed])
    with pytest.raises(ValueError):  # (a reactor logs it)
        protocol.connectionLost(Failure(error.ConnectionDone()))
    assert got[0].check(ConnectionLost) and closed == [None]


# --- subscribed ---------------------------------------------------------------------------


def subscribed():
    """A protocol with an C{on_push}; the list of what was pushed."""
    protocol, transport, lost = connected()
    pushed = []
    protocol.on_push = pushed.append
    return protocol, transport, pushed


CONFIRMED = (b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
             b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n")
MESSAGE = b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"


@pytest.mark.parametrize("command, replies", [
    (("SUBSCRIBE", "a", "b"), 2), (("subscribe", "a"), 1), ((b"SUBSCRIBE", b"a", b"b"), 2),
    (("PSUBSCRIBE", "a*", "b*", "c*"), 3), (("SUBSCRIBE",), 1), (("PING",), 1),
    (("GET", "a", "b"), 1), ((7, "a", "b"), 1),
])
def test_a_subscribe_owes_one_reply_per_channel_any_other_command_one(command, replies):
    assert owed(command) == replies


@pytest.mark.parametrize("cut", range(1, len(CONFIRMED + MESSAGE)))
def test_a_subscribe_fires_with_one_confirmation_per_channel_and_the_message_after_is_pushed(
        cut):
    protocol, transport, pushed = subscribed()
    got = outcomes([protocol.send([("SUBSCRIBE", "a", "b")])])
    data = CONFIRMED + MESSAGE
    protocol.dataReceived(data[:cut])
    protocol.dataReceived(data[cut:])
    assert got == [[[b"subscribe", b"a", 1], [b"subscribe", b"b", 2]]]
    assert pushed == [[b"message", b"a", b"hi"]]
    assert protocol.oldest is None and transport.closing is None


def test_an_error_reply_is_a_subscribes_whole_answer_and_the_next_command_gets_its_own():
    protocol, transport, pushed = subscribed()
    got = outcomes([protocol.send([("AUTH", "x"), ("SUBSCRIBE", "a", "b"), ("PING",)])])
    protocol.dataReceived(b"-WRONGPASS no\r\n-NOAUTH Authentication required.\r\n"
                          b"-NOAUTH Authentication required.\r\n")
    [replies] = got
    assert [str(reply) for reply in replies] == [
        "WRONGPASS no", "NOAUTH Authentication required.", "NOAUTH Authentication required."]
    assert pushed == [] and transport.closing is None and protocol.oldest is None


def test_a_message_between_a_ping_and_its_pong_is_pushed_and_the_pong_answers_the_ping():
    protocol, transport, pushed = subscribed()
    got = outcomes([protocol.send([("PING",)])])
    protocol.dataReceived(MESSAGE + b"*3\r\n$8\r\npmessage\r\n$2\r\na*\r\n$1\r\na\r\n")
    assert got == [] and protocol.oldest is not None
    assert pushed == [[b"message", b"a", b"hi"], [b"pmessage", b"a*", b"a"]]
    protocol.dataReceived(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
    assert got == [[[b"pong", b""]]] and len(pushed) == 2


def test_subscribed_a_reply_owed_to_no_command_is_pushed_not_fatal():
    protocol, transport, pushed = subscribed()
    protocol.dataReceived(b"+OK\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
                          b"*1\r\n*0\r\n")
    assert pushed == [b"OK", [b"subscribe", b"a", 1], [[]]]
    assert transport.closing is None


def test_a_reply_shaped_as_a_message_is_a_reply_unless_subscribed_or_led_by_a_list():
    protocol, transport, lost = connected()  # a command connection: no on_push
    got = outcomes([protocol.send([("LRANGE", "l", 0, -1)])])
    protocol.dataReceived(MESSAGE)
    assert got == [[[b"message", b"a", b"hi"]]] and transport.closing is None
    protocol, transport, pushed = subscribed()
    got = outcomes([protocol.send([("PING",)])])
    protocol.dataReceived(b"*1\r\n*1\r\n$7\r\nmessage\r\n")  # [[b"message"]]: not one
    assert got == [[[[b"message"]]]] and pushed == []


def test_nothing_is_read_once_the_connection_was_lost_in_the_middle_of_the_bytes():
    protocol, transport, pushed = subscribed()

    def push(reply):
        pushed.append(reply)
        protocol.connectionLost(Failure(error.ConnectionDone()))
    protocol.on_push = push
    protocol.dataReceived(MESSAGE + MESSAGE)
    assert pushed == [[b"message", b"a", b"hi"]] and protocol.lost
