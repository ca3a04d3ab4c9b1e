"""RESP on the reactor (sipxcc/calls/redis_protocol.py) at its edges: the reply bound
counts from the first byte of a connection; a subscribed connection made with its
C{on_push} gets what Redis pushes; a SUBSCRIBE of three channels takes three
confirmations before the next command's reply; a command named in bytes that are not
ASCII is owed one reply; and a failed TLS handshake whose reasons are odd (a mismatch
naming nothing, a host name that is not ASCII, an OpenSSL error without reasons or with an
empty one) is still told in one line, never a traceback."""

from __future__ import annotations

from types import SimpleNamespace

from OpenSSL import SSL
from service_identity.exceptions import DNSMismatch, VerificationError
from twisted.internet import error
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sipxcc.calls.redis_protocol import RespProtocol, describe, owed
from tests.unit.redisfakes import outcomes
from tests.unit.test_redis_protocol import CONFIRMED, MESSAGE, Recorded, connected


def test_the_reply_bound_counts_from_the_first_byte_of_the_connection():
    protocol, transport, lost = connected()
    protocol.max_reply = 20
    got = outcomes([protocol.send([("GET", "a")])])
    protocol.dataReceived(b"$16\r\n" + b"x" * 15)  # 20 bytes, the reply not complete
    assert transport.closing is None and got == []
    protocol.dataReceived(b"x")  # 21
    assert transport.closing == "abort"


def test_a_new_connection_is_not_lost_and_a_closed_one_is():
    protocol, _, _ = connected()
    assert protocol.lost is False
    protocol.connectionLost(Failure(error.ConnectionDone()))
    assert protocol.lost is True


def test_a_connection_made_with_its_on_push_hands_it_what_redis_pushes():
    pushed = []
    protocol = RespProtocol(Clock(), on_push=pushed.append)
    transport = Recorded()
    protocol.makeConnection(transport)
    protocol.dataReceived(MESSAGE)
    assert pushed == [[b"message", b"a", b"hi"]] and transport.closing is None


def test_a_subscribe_of_three_channels_takes_three_confirmations_before_the_pings_pong():
    protocol, transport, _ = connected()
    pushed = []
    protocol.on_push = pushed.append
    got = outcomes([protocol.send([("SUBSCRIBE", "a", "b", "c"), ("PING",)])])
    protocol.dataReceived(CONFIRMED + b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:3\r\n"
                          b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
    assert got == [[[b"subscribe", b"a", 1], [b"subscribe", b"b", 2],
                    [b"subscribe", b"c", 3], [b"pong", b""]]]
    assert pushed == [] and transport.closing is None


def test_a_command_named_in_bytes_that_are_not_ascii_is_owed_one_reply():
    assert owed((b"\xffSUBSCRIBE", b"a", b"b")) == 1


def test_a_mismatch_naming_nothing_is_told_by_its_kind():
    class OtherMismatch(Exception):
        """A mismatch without the identity it was looking for."""

    unnamed = DNSMismatch(mismatched_id=SimpleNamespace())  # neither ip nor hostname
    reason = Failure(VerificationError(errors=[OtherMismatch(), unnamed]))
    assert describe(reason) == (
        "TLS handshake failed: the certificate is not for OtherMismatch, DNSMismatch")


def test_a_host_name_that_is_not_ascii_is_told_with_replacement_characters():
    name = DNSMismatch(mismatched_id=SimpleNamespace(hostname=b"caf\xc3\xa9.example"))
    assert describe(Failure(VerificationError(errors=[name]))) == (
        "TLS handshake failed: the certificate is not for caf\ufffd\ufffd.example")


def test_a_verification_error_without_its_list_of_errors_is_told_as_twisted_tells_it():
    bare = VerificationError(errors=[])
    del bare.errors
    reason = Failure(bare)
    assert describe(reason) == reason.getErrorMessage()


def test_an_openssl_error_without_reasons_or_with_an_empty_one_is_told_as_twisted_tells_it():
    assert describe(Failure(SSL.Error())) == ""
    empty = Failure(SSL.Error([("SSL routines", "tls_process_server_certificate", "")]))
    assert describe(empty) == "[('SSL routines', 'tls_process_server_certificate', '')]"
