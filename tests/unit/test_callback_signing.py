"""Status webhooks a receiver can trust: sequence numbers, HMAC signatures, the event
filter, the event names, and the signing key's file checks."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from sipxcc.calls.call import Call, CallRequest, StatusEvent
from sipxcc.calls.callbacks import SecretError, StatusCallbacks, read_secret
from sipxcc.calls.events import NAMES, EventNamer, parse_names
from sipxcc.users import User
from sipxcc.web.params import BadParameter, check_callback_events

USER1 = User("user1@sipx.test", "user1", (), None, None, None)
SECRET = b"0123456789abcdef-secret"


class Poster:
    """Delivers at once and keeps what was posted: (body bytes, headers)."""

    def __init__(self):
        self.posted: list[tuple[bytes, dict]] = []

    def __call__(self, url, body, headers=None):
        self.posted.append((body, dict(headers or {})))
        return defer.succeed(200)

    def documents(self) -> list[dict]:
        return [json.loads(body) for body, _ in self.posted]


def attach(secret=SECRET, events=None, clock=None):
    clock = clock or Clock()
    post = Poster()
    callbacks = StatusCallbacks(clock, post, secret)
    call = Call(CallRequest(USER1, "user1@sipx.test", "user2@sipx.test",
                            status_callback="https://crm.example/hook",
                            status_callback_events=events), 0)
    callbacks.attach(call)
    return clock, post, call


def refer_call(call) -> None:
    call.record(999, "a", "INVITE", "SIP/2.0 407 Proxy Authentication Required")
    call.record(1000, "a", "INVITE", "SIP/2.0 100 Trying")
    call.record(1001, "a", "INVITE", "SIP/2.0 180 Ringing")
    call.record(1002, "a", "INVITE", "SIP/2.0 200 OK")
    call.record(1003, "a", "REFER", "SIP/2.0 202 Accepted")
    call.record(1004, "a", "NOTIFY", "SIP/2.0 180 Ringing")
    call.record(1005, "a", "NOTIFY", "SIP/2.0 200 OK")
    call.finish("ended")


def verify(secret: bytes, header: bytes, body: bytes) -> int:
    """What a receiver does, written independently of the sender: returns t."""
    fields = dict(part.split("=", 1) for part in header.decode().split(","))
    expected = hmac.new(secret, fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"])
    return int(fields["t"])


def test_every_delivery_is_signed_over_timestamp_and_body():
    clock = Clock()
    clock.advance(1_700_000_000)
    _, post, call = attach(clock=clock)
    refer_call(call)
    assert len(post.posted) == 8
    for body, headers in post.posted:
        assert verify(SECRET, headers[b"X-Sipxcc-Signature"], body) == 1_700_000_000


def test_a_tampered_body_does_not_verify():
    _, post, call = attach()
    refer_call(call)
    body, headers = post.posted[0]
    with pytest.raises(AssertionError):
        verify(SECRET, headers[b"X-Sipxcc-Signature"], body.replace(b"999", b"998"))


def test_without_a_secret_there_is_no_signature_header():
    _, post, call = attach(secret=None)
    refer_call(call)
    assert all(headers == {} for _, headers in post.posted)


def test_sequence_counts_from_one_without_gaps_and_events_are_named():
    _, post, call = attach()
    refer_call(call)
    documents = post.documents()
    assert [d["sequence"] for d in documents] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [d["event"] for d in documents] == [
        "initiated", "initiated", "ringing", "answered", "transferring", "transferring",
        "connected", "completed"]


def test_the_filter_sends_only_the_events_asked_for_and_the_sequence_stays_gap_free():
    _, post, call = attach(events=frozenset({"ringing", "answered", "completed"}))
    refer_call(call)
    documents = post.documents()
    assert [(d["sequence"], d["event"]) for d in documents] == [
        (1, "ringing"), (2, "answered"), (3, "completed")]
    assert documents[0]["status-line"] == "SIP/2.0 180 Ringing"


def test_a_failed_call_ends_with_failed():
    _, post, call = attach(events=frozenset({"failed"}))
    call.record(1000, "a", "INVITE", "SIP/2.0 486 Busy Here")
    call.finish("failed")
    assert [d["event"] for d in post.documents()] == ["failed", "failed"]
    assert post.documents()[-1]["ended"] is True


def test_invite_mode_names_the_second_leg_transferring_then_connected():
    namer = EventNamer()
    lines = [("a", "INVITE", "SIP/2.0 180 Ringing"), ("a", "INVITE", "SIP/2.0 200 OK"),
             ("b", "INVITE", "SIP/2.0 180 Ringing"), ("b", "INVITE", "SIP/2.0 200 OK"),
             ("b", "BYE", "SIP/2.0 200 OK")]
    names = [namer.name(StatusEvent(0, cid, method, line), "connected")
             for cid, method, line in lines]
    assert names == ["ringing", "answered", "transferring", "connected", "completed"]


def test_a_line_that_is_no_status_keeps_the_previous_name():
    namer = EventNamer()
    assert namer.name(StatusEvent(0, "a", "INVITE", "SIP/2.0 180 Ringing"), "ringing") == \
        "ringing"
    assert namer.name(StatusEvent(0, "a", "NOTIFY", "garbage"), "ringing") == "ringing"


def test_event_names_parse_and_unknown_ones_are_refused_by_name():
    assert parse_names("ringing,answered, completed") == {"ringing", "answered", "completed"}
    assert check_callback_events(",".join(NAMES)) == frozenset(NAMES)
    with pytest.raises(BadParameter) as raised:
        check_callback_events("ringing,hungup")
    assert "statusCallbackEvent" in str(raised.value) and "hungup" in str(raised.value)
    with pytest.raises(BadParameter):
        check_callback_events("")
    with pytest.raises(BadParameter):
        check_callback_events("ringing," * 40)


def test_the_secret_is_the_key_itself_or_an_owner_only_file(tmp_path):
    assert read_secret(None) is None
    assert read_secret("a-long-enough-key-1234") == b"a-long-enough-key-1234"
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    os.chmod(path, 0o600)
    assert read_secret(str(path)) == SECRET


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_group_or_world_readable_secret_file_is_refused_in_one_line(tmp_path, mode):
    path = tmp_path / "secret"
    path.write_bytes(SECRET)
    os.chmod(path, mode)
    with pytest.raises(SecretError) as raised:
        read_secret(str(path))
    assert str(raised.value) == (f"calls.callback_secret: {path} is readable by group or "
                                 f"others (mode {mode:04o}); chmod 600 it")


def test_a_missing_file_or_a_short_key_is_refused(tmp_path):
    with pytest.raises(SecretError, match="cannot read"):
        read_secret(str(tmp_path / "nothing"))
    with pytest.raises(SecretError, match="shorter"):
        read_secret("short")


def test_post_passes_the_filter_to_the_call_and_refuses_an_unknown_event():
    from tests.unit.webfakes import WebHarness
    web = WebHarness()
    hook = "&statusCallback=https%3A%2F%2Fhooks.example%2Fcb"
    web.request(b"POST", "/callcontroller/user1/user2?statusCallbackEvent=ringing%2Ccompleted"
                + hook, client="127.0.0.1")
    [call] = web.registry.calls
    assert call.request.status_callback_events == {"ringing", "completed"}
    bad = web.request(b"POST", "/callcontroller/user1/user2?statusCallbackEvent=rung" + hook,
                      client="127.0.0.1")
    assert bad.responseCode == 400 and b"statusCallbackEvent" in bad.body
    assert len(web.registry.calls) == 1


def test_a_secret_file_gives_its_whole_first_line_at_most_4096_bytes(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"  a key with spaces in it  \nsecond line\n")
    os.chmod(path, 0o600)
    assert read_secret(str(path)) == b"a key with spaces in it"
    path.write_bytes(b"k" * 5000 + b"\n")
    assert read_secret(str(path)) == b"k" * 4096  # what is read of a secret file is bounded


def test_a_key_of_exactly_the_minimum_length_is_accepted():
    from sipxcc.calls.callbacks import MIN_SECRET
    assert read_secret("k" * MIN_SECRET) == b"k" * MIN_SECRET
    with pytest.raises(SecretError, match=f"shorter than {MIN_SECRET} bytes"):
        read_secret("k" * (MIN_SECRET - 1))
