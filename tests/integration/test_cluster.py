"""
Two daemons sharing their calls through one redis-server (``registry.backend = redis``),
behind Kamailio with sipp phones: a call placed on one node is found at once on the
other, and both answer every document about it with the same bytes; DELETE (REFER and
INVITE mode) and transfer on the other node are run by the node that runs the call;
a POST retried on the other node with its Idempotency-Key gets the first answer and the
phone rings once; while Redis is down POST (with a key or without) answers 503 with
Retry-After and places no call, and once Redis is back calls are placed again.
"""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
from lxml import etree

from tests.integration.e2e import NS, status_lines, wait_for
from tests.integration.test_shutdown import DEBIAN_ENV, DEBIAN_TWISTD

CALL = "/callcontroller/user1/user2"
INVITE_MODE = CALL + "?sipMethod=INVITE"


def same_documents(c, paths):
    """Each node answers each path, as XML and as JSON, with the same bytes."""
    for path in paths:
        for accept in (None, "application/json"):
            assert c.get(0, path, accept) == c.get(1, path, accept), (path, accept)


def sent_by(message: str, daemon) -> bool:
    """Whether C{daemon} sent C{message} (its Via, below Kamailio's)."""
    return f"127.0.0.1:{daemon.sip_port}" in re.findall(r"^Via:.*$", message, re.M)[-1]


def dialog_states(body: bytes) -> list[str]:
    return [d.findtext(f"{NS}dialog-state")
            for d in etree.fromstring(body).iter(f"{NS}dialog")]


def test_a_refer_call_placed_on_one_node_is_shown_and_ended_by_the_other(cluster):
    c = cluster()
    phone = c.phone("user1", "caller_no_answer")
    code, body, headers = c.request(0, "POST", CALL)
    assert code == 200, body
    location = headers["location"]
    found = json.loads(c.get(1, location, "application/json"))  # at once, on the other node
    assert (found["calling"], found["called"], found["mode"]) == (
        "user1@sipx.test", "user2@sipx.test", "REFER")
    wait_for(lambda: ("INVITE", "SIP/2.0 180 Ringing") in status_lines(c.get(1, CALL).decode()))
    same_documents(c, (CALL, location, "/calls"))

    code, body, _ = c.request(1, "DELETE", CALL)
    assert code == 200, body
    assert phone.wait(20) == 0, phone.errors()  # cancelled (only node 0 can: its INVITE)
    assert sent_by(phone.received("INVITE")[0], c.daemons[0])
    wait_for(lambda: c.state(1, location) == "failed")
    assert status_lines(c.get(1, CALL).decode())[-1] == (
        "INVITE", "SIP/2.0 487 Request Terminated")
    same_documents(c, (CALL, location, "/calls"))


def test_an_invite_call_is_transferred_and_ended_through_the_other_node(cluster):
    c = cluster()
    a = c.phone("user1", "im_caller")
    b = c.phone("user2", "im_callee_reinvited")
    x = c.phone("user4", "phone_answer")
    code, body, headers = c.request(0, "POST", INVITE_MODE)
    assert code == 200, body
    location = headers["location"]
    wait_for(lambda: c.state(1, location) == "connected"
             and dialog_states(c.get(1, INVITE_MODE)) == ["Confirmed Dialog"] * 2)
    same_documents(c, (INVITE_MODE, location, "/calls"))

    code, body, headers = c.request(1, "POST", INVITE_MODE + "&action=transfer&target=user4")
    assert (code, headers["location"]) == (200, location), body
    assert a.wait(20) == 0, a.errors()  # A was BYEd: X took its place
    assert sent_by(a.received("BYE")[0], c.daemons[0])
    wait_for(lambda: c.state(1, location) == "connected" and dialog_states(
        c.get(1, INVITE_MODE)) == ["Terminated Dialog", "Confirmed Dialog", "Confirmed Dialog"])
    same_documents(c, (INVITE_MODE, location, "/calls"))

    code, body, _ = c.request(1, "DELETE", location)
    assert code == 200, body
    assert b.wait(20) == 0, b.errors()
    assert x.wait(20) == 0, x.errors()
    assert sent_by(b.received("BYE")[0], c.daemons[0])
    wait_for(lambda: c.state(1, location) == "ended")
    same_documents(c, (INVITE_MODE, location, "/calls"))


def call_ids(messages: list[str]) -> set[str]:
    return {line for message in messages for line in message.splitlines()
            if line.lower().startswith("call-id:")}


def test_a_post_retried_on_the_other_node_with_its_idempotency_key_rings_once(cluster):
    c = cluster()
    phone = c.phone("user1", "refer_transferee")
    key = {"Idempotency-Key": "crm-ticket 4711"}
    code, body, first = c.request(0, "POST", CALL, headers=key)
    assert code == 200 and "idempotent-replayed" not in first, body
    code, again, replayed = c.request(1, "POST", CALL, headers=key)  # the retry, on B
    assert (code, again) == (200, body)
    assert replayed["idempotent-replayed"] == "true"
    assert replayed["location"] == first["location"]
    code, _, _ = c.request(1, "POST", CALL + "?timeout=30", headers=key)
    assert code == 422  # the same key with other parameters, on either node
    assert phone.wait(20) == 0, phone.errors()
    assert len(call_ids(phone.received("INVITE"))) == 1  # the phone rang once
    assert len(phone.received("REFER")) == 1
    assert calls_placed(c, 0) + calls_placed(c, 1) == 1


def calls_placed(c, node: int) -> float:
    """What the node's /metrics counts of placed calls."""
    text = c.get(node, "/metrics").decode()
    return sum(float(value) for value in
               re.findall(r"^sipxcc_calls_placed_total\{[^}]*\} (\S+)$", text, re.M))


def test_while_redis_is_down_post_is_503_and_places_no_call_then_works_again(cluster):
    c = cluster()
    c.redis.stop()
    wait_for(lambda: c.daemons[0].health() == 503)
    code, body, headers = c.request(0, "POST", CALL)
    assert code == 503 and headers["retry-after"] == "5"
    document = etree.fromstring(body)
    assert [e.text for e in document] == [
        "ERROR", "503", "The call registry is unavailable; try again later"]
    code, body, headers = c.request(1, "GET", CALL, "application/json")
    assert (code, json.loads(body)["error-code"], headers["retry-after"]) == (503, 503, "5")
    # with an Idempotency-Key: its key cannot be claimed, so no call either
    code, body, headers = c.request(1, "POST", CALL, headers={"Idempotency-Key": "k-503"})
    assert (code, headers["retry-after"]) == (503, "5"), body
    assert calls_placed(c, 0) == calls_placed(c, 1) == 0

    c.redis.start()
    wait_for(lambda: all(daemon.health() == 200 for daemon in c.daemons))  # reconnected
    phone = c.phone("user1", "refer_transferee")
    code, body, headers = c.request(0, "POST", CALL, headers={"Idempotency-Key": "k-503"})
    assert code == 200 and "idempotent-replayed" not in headers, body
    assert phone.wait(20) == 0, phone.errors()
    wait_for(lambda: ("NOTIFY", "SIP/2.0 200 OK") in status_lines(c.get(1, CALL).decode()))
    assert calls_placed(c, 0) == 1


@pytest.mark.parametrize("twistd, env", [
    pytest.param(None, None, id="venv-twisted"),
    pytest.param([DEBIAN_TWISTD], DEBIAN_ENV, id="debian-twistd3",
                 marks=pytest.mark.skipif(not os.path.exists(DEBIAN_TWISTD),
                                          reason="Debian's python3-twisted is not installed")),
])
def test_a_node_stopped_with_a_call_in_progress_ends_it_in_the_registry_first(
        cluster, twistd, env):
    c = cluster(twistd=twistd, env=env)
    phone = c.phone("user1", "caller_no_answer")
    code, body, headers = c.request(0, "POST", CALL)
    assert code == 200, body
    location = headers["location"]
    wait_for(lambda: ("INVITE", "SIP/2.0 180 Ringing") in status_lines(c.get(1, CALL).decode()))
    assert c.daemons[0].stop() == -signal.SIGTERM
    assert phone.wait(20) == 0, phone.errors()  # cancelled as the node stopped
    # the end was written before node 0 let go of Redis: node 1 shows it at once
    assert c.state(1, location) == "failed"
    assert status_lines(c.get(1, CALL).decode())[-1] == (
        "INVITE", "SIP/2.0 487 Request Terminated")
    log = c.daemons[0].log_text()
    assert "Traceback" not in log and "critical" not in log, log
