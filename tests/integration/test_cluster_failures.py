"""
Two daemons sharing one redis-server behind Kamailio with sipp phones, when things go
wrong: the limits hold across both nodes; a node killed with ``kill -9`` has its calls
ended ("node lost") by the other node and their limits released; a node restarted with
its node_id ends its earlier calls ("restart") before it serves; Redis stopped and
started while calls go on: 503s while it is down, calls carry on on their node, every
status line reaches Redis once it is back; beyond the write buffer's bound the writes
are dropped, logged and counted in /health.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import time

from lxml import etree

from sipxcc.calls.redis_store import HEARTBEAT_INTERVAL, HEARTBEAT_TTL
from tests.integration.e2e import NS, wait_for

JSON = "application/json"
INVITE_MODE = "/callcontroller/user1/user2?sipMethod=INVITE"
# Node 1 finds node 0 gone once node 0's heartbeat has expired and node 1 has beaten once
# more (each beat looks for lost nodes); the rest is slack for a busy machine.
LOST_WITHIN = HEARTBEAT_TTL + 2 * HEARTBEAT_INTERVAL + 10
# What a REFER call's calling phone reports after its cue (refer_transferee_on_cue.xml),
# then the controller's BYE answered.
AFTER_CUE = [("NOTIFY", "SIP/2.0 100 Trying"), ("NOTIFY", "SIP/2.0 180 Ringing"),
             ("NOTIFY", "SIP/2.0 200 OK")]


def post(c, node: int, path: str) -> tuple[int, dict[str, str], bytes]:
    code, body, headers = c.request(node, "POST", path)
    return code, headers, body


def error_code(body: bytes) -> int:
    """The error code of an XML processing-status document."""
    return int(etree.fromstring(body).findtext(f"{NS}error-code"))


def call(c, node: int, location: str) -> dict:
    """The call's JSON document (C{/calls/{id}}) as C{node} serves it."""
    return json.loads(c.get(node, location, JSON))


def lines(c, node: int, location: str) -> list[tuple[str, str]]:
    return [(line["method"], line["status-line"])
            for line in call(c, node, location)["status-lines"]]


def dialog_states(body: bytes) -> list[str]:
    return [d.findtext(f"{NS}dialog-state")
            for d in etree.fromstring(body).iter(f"{NS}dialog")]


def health(daemon) -> tuple[int | None, dict[str, str]]:
    """/health's status and the registry line's figures ("dropped writes": "3", ...)."""
    code, body = daemon.get("/health")
    figures = dict(re.findall(r"(buffered writes|dropped writes) (\d+)", body.decode()))
    return code, figures


def kill(daemon) -> None:
    """kill -9: the node ends nothing, writes nothing, its heartbeat stops."""
    os.kill(daemon.process.pid, signal.SIGKILL)
    daemon.process.wait(10)


def cue(c, user: str, call_id: str, timeout: float = 10.0) -> None:
    """Tell C{user}'s refer_transferee_on_cue phone to go on with its call C{call_id}: an
    OPTIONS in that call, sent through Kamailio (the phone answers where its call came
    from) until the phone's 200 comes back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        local = sock.getsockname()[1]
        options = (
            f"OPTIONS sip:{user}@sipx.test SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
            f"From: <sip:test@127.0.0.1:{local}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{user}@sipx.test>\r\nCall-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.sendto(options, ("127.0.0.1", c.proxy_port))
            try:
                if sock.recv(65536).startswith(b"SIP/2.0 200 "):
                    return
            except TimeoutError:
                continue  # resent, as a UDP request is (RFC 3261 §17.1.2.1)
    raise AssertionError(f"{user}'s phone never took its cue")


def invite_call_id(c, node: int, location: str) -> str:
    return call(c, node, location)["status-lines"][0]["call-id"]


def refused_while_down(c, node: int, location: str) -> None:
    """While Redis is down, C{node} answers POST, GET and DELETE 503 with Retry-After."""
    code, headers, body = post(c, node, "/callcontroller/user3/2009")
    assert (code, headers.get("retry-after"), error_code(body)) == (503, "5", 503), body
    for method, path in (("GET", location), ("GET", "/callcontroller/user1/2001"),
                         ("GET", "/calls"), ("DELETE", location)):
        code, body, headers = c.request(node, method, path, JSON)
        assert (code, headers.get("retry-after")) == (503, "5"), (method, path, body)
        assert json.loads(body)["error-code"] == 503


def no_traceback(daemon) -> None:
    log = daemon.log_text()
    assert "Traceback" not in log and "critical" not in log, log[-3000:]


# --- the limits -----------------------------------------------------------------------------


def test_the_limits_hold_across_both_nodes_and_an_ended_call_frees_its_slot(cluster):
    c = cluster(calls_max_calls=3, calls_max_calls_per_agent=2)
    c.phone("user1", "caller_no_answer", calls=None)  # rings until cancelled, every call
    code, headers, body = post(c, 0, "/callcontroller/user1/2001")
    assert code == 200, body
    first = headers["location"]
    assert post(c, 1, "/callcontroller/user1/2002")[0] == 200
    for node in (0, 1):  # user1's two calls, one on each node: the agent's limit
        code, headers, body = post(c, node, "/callcontroller/user1/2003")
        assert (code, error_code(body)) == (429, 429), body
        assert int(headers["retry-after"]) > 0
    assert post(c, 1, "/callcontroller/user1/3001?agent=user3")[0] == 200
    for node in (0, 1):  # three calls, two on node 1, one on node 0: the cluster's limit
        code, headers, body = post(c, node, "/callcontroller/user4/3002?agent=user3")
        assert (code, error_code(body)) == (503, 503), body
        assert int(headers["retry-after"]) > 0
    listed = json.loads(c.get(1, "/calls", JSON))["calls"]
    assert sorted(entry["called"] for entry in listed) == [
        "2001@sipx.test", "2002@sipx.test", "3001@sipx.test"]  # the refused placed nothing

    # the call on node 0 ends: its slot is free for node 1
    code, body, _ = c.request(0, "DELETE", first)
    assert code == 200, body
    wait_for(lambda: call(c, 1, first)["state"] == "failed")  # cancelled: 487
    wait_for(lambda: post(c, 1, "/callcontroller/user1/2003")[0] == 200)
    code, headers, body = post(c, 0, "/callcontroller/user4/2004")  # three again
    assert (code, error_code(body)) == (503, 503), body


# --- a node lost, a node restarted ----------------------------------------------------------


def place_ringing_and_connected(c, node: int) -> tuple[str, str]:
    """On C{node}: a REFER call of user3's ringing (nobody answers) and an INVITE-mode call
    user1 -> user2 connected; their locations once both are so."""
    code, headers, body = post(c, node, "/callcontroller/user3/2001")
    assert code == 200, body
    ringing = headers["location"]
    code, headers, body = post(c, node, INVITE_MODE)
    assert code == 200, body
    connected = headers["location"]
    wait_for(lambda: call(c, node, ringing)["state"] == "ringing"
             and call(c, node, connected)["state"] == "connected"
             and dialog_states(c.get(node, INVITE_MODE)) == ["Confirmed Dialog"] * 2)
    return ringing, connected


def test_a_node_killed_mid_call_has_its_calls_ended_by_the_other_and_their_limits_freed(
        cluster):
    c = cluster(calls_max_calls_per_agent=1)
    ringing_phone = c.phone("user3", "caller_no_answer", calls=2)
    a, b = c.phone("user1", "im_caller"), c.phone("user2", "invite_b")
    ringing, connected = place_ringing_and_connected(c, 0)
    # both limits are taken, on the other node too: user3's one call, user1's key
    code, _, body = post(c, 1, "/callcontroller/user3/2002")
    assert (code, error_code(body)) == (429, 429), body
    code, _, body = post(c, 1, INVITE_MODE)
    assert (code, error_code(body)) == (409, 409), body
    ringing_lines = lines(c, 1, ringing)

    kill(c.daemons[0])
    wait_for(lambda: all(entry["state"] == "ended" for entry in
                         json.loads(c.get(1, "/calls", JSON))["calls"]), timeout=LOST_WITHIN)
    for location in (ringing, connected):
        found = call(c, 1, location)
        assert (found["state"], found["reason"]) == ("ended", "node lost"), found
    assert dialog_states(c.get(1, INVITE_MODE)) == ["Terminated Dialog"] * 2
    assert lines(c, 1, ringing) == ringing_lines  # what node 0 saw, nothing invented
    summaries = etree.fromstring(c.get(1, "/calls"))
    assert [s.findtext(f"{NS}reason") for s in summaries] == ["node lost"] * 2

    # the limits are free: the same agent and the same keys are placed on node 1
    code, headers, body = post(c, 1, "/callcontroller/user3/2001")
    assert code == 200, body
    again = headers["location"]
    assert again != ringing
    wait_for(lambda: call(c, 1, again)["state"] == "ringing")
    for phone in (a, b):  # still in node 0's dialogs: the phones are picked up anew
        phone.stop()
    a, b = c.phone("user1", "im_caller"), c.phone("user2", "invite_b")
    code, headers, body = post(c, 1, INVITE_MODE)
    assert code == 200, body
    wait_for(lambda: call(c, 1, headers["location"])["state"] == "connected")
    code, body, _ = c.request(1, "DELETE", headers["location"])
    assert code == 200, body
    assert a.wait(20) == 0, a.errors()
    assert b.wait(20) == 0, b.errors()
    code, body, _ = c.request(1, "DELETE", again)
    assert code == 200, body
    wait_for(lambda: call(c, 1, again)["state"] == "failed")
    assert ringing_phone.returncode is None  # its first call still rings: nobody is left
    no_traceback(c.daemons[1])


def test_a_node_restarted_with_its_id_ends_its_earlier_calls_before_it_serves(cluster):
    c = cluster(nodes=1, calls_max_calls_per_agent=1)
    c.phone("user3", "caller_no_answer", calls=2)
    c.phone("user1", "im_caller")
    c.phone("user2", "invite_b")
    ringing, connected = place_ringing_and_connected(c, 0)
    node = c.daemons[0]
    kill(node)
    node.start()  # same config, same node_id; returns once /health answers 200
    listed = json.loads(c.get(0, "/calls", JSON))["calls"]
    assert [(entry["state"], entry["reason"]) for entry in listed] == [
        ("ended", "restart")] * 2
    assert {entry["id"] for entry in listed} == {ringing.rsplit("/", 1)[1],
                                                connected.rsplit("/", 1)[1]}
    assert dialog_states(c.get(0, INVITE_MODE)) == ["Terminated Dialog"] * 2
    # and their limits are free
    code, headers, body = post(c, 0, "/callcontroller/user3/2001")
    assert code == 200, body
    wait_for(lambda: call(c, 0, headers["location"])["state"] == "ringing")


# --- Redis going away under load ------------------------------------------------------------


def place_on_cue(c, placements) -> dict[str, str]:
    """REFER calls C{user} -> 2001 on C{node} for each (user, node); each calling phone
    answers, accepts the REFER and waits for its cue. Their locations by user."""
    placed = {}
    for user, node in placements:
        code, headers, body = post(c, node, f"/callcontroller/{user}/2001")
        assert code == 200, body
        placed[user] = headers["location"]
    wait_for(lambda: all(("REFER", "SIP/2.0 202 Accepted") in lines(c, 1, location)
                         for location in placed.values()))
    return placed


def test_redis_stopped_under_load_refuses_with_503_and_every_status_line_reaches_it_after(
        cluster):
    # Redis as Debian's redis.conf runs it: stopping it writes its snapshot
    c = cluster(redis_save_on_stop=True)
    users = (("user1", 0), ("user2", 1), ("user4", 0))  # go on while Redis is down
    phones = {user: c.phone(user, "refer_transferee_on_cue") for user in (*dict(users),
                                                                           "user3")}
    placed = place_on_cue(c, (*users, ("user3", 1)))  # user3's waits until Redis is back
    before = {user: lines(c, 1, location) for user, location in placed.items()}
    call_ids = {user: invite_call_id(c, 1, location) for user, location in placed.items()}

    c.redis.stop()
    wait_for(lambda: all(daemon.health() == 503 for daemon in c.daemons))
    for node in (0, 1):
        refused_while_down(c, node, placed["user1"])
    # the calls go on on their nodes: the rest of their status lines arise now
    for user, _ in users:
        cue(c, user, call_ids[user])
    for user, _ in users:
        assert phones[user].wait(20) == 0, (user, phones[user].errors())  # BYE sent
    for node, calls in ((0, 2), (1, 1)):
        code, figures = health(c.daemons[node])
        assert code == 503 and int(figures["buffered writes"]) >= calls * len(AFTER_CUE)
        assert figures["dropped writes"] == "0"
    for node in (0, 1):
        refused_while_down(c, node, placed["user2"])
    assert all(daemon.process.poll() is None for daemon in c.daemons)

    c.redis.start()
    wait_for(lambda: all(daemon.health() == 200 for daemon in c.daemons))
    wait_for(lambda: all(health(daemon)[1]["buffered writes"] == "0" for daemon in c.daemons))
    # the call that waited goes on now, on its node
    cue(c, "user3", call_ids["user3"])
    assert phones["user3"].wait(20) == 0, phones["user3"].errors()
    wait_for(lambda: call(c, 0, placed["user3"])["state"] == "ended")
    for user, location in placed.items():
        for node in (0, 1):
            found = call(c, node, location)
            got = [(line["method"], line["status-line"]) for line in found["status-lines"]]
            # every line, in order: those before Redis stopped, then those after
            assert got == before[user] + AFTER_CUE, (user, node, got)
            stamps = [line["timestamp"] for line in found["status-lines"]]
            assert stamps == sorted(stamps)
            # ended by its node, not taken for lost when Redis came back
            assert found["state"] == "ended" and "reason" not in found, found
        assert c.get(0, location) == c.get(1, location)
    for daemon in c.daemons:
        assert health(daemon) == (200, {"buffered writes": "0", "dropped writes": "0"})
        no_traceback(daemon)

    # service resumes on both nodes
    for node, user in ((0, "user1"), (1, "user2")):
        phone = c.phone(user, "refer_transferee")
        code, headers, body = post(c, node, f"/callcontroller/{user}/2002")
        assert code == 200, body
        assert phone.wait(20) == 0, phone.errors()
        wait_for(lambda location=headers["location"], other=1 - node: (
            "NOTIFY", "SIP/2.0 200 OK") in lines(c, other, location))


def test_writes_beyond_the_buffer_while_redis_is_down_are_dropped_logged_and_counted(
        cluster):
    bound = 10
    c = cluster(nodes=1, redis_save_on_stop=True, registry_max_buffered_writes=bound)
    users = (("user1", 0), ("user2", 0), ("user4", 0))
    phones = {user: c.phone(user, "refer_transferee_on_cue") for user, _ in users}
    placed = {}
    for user, node in users:
        code, headers, body = post(c, node, f"/callcontroller/{user}/2001")
        assert code == 200, body
        placed[user] = headers["location"]
    wait_for(lambda: all(("REFER", "SIP/2.0 202 Accepted") in lines(c, 0, location)
                         for location in placed.values()))
    before = {user: lines(c, 0, location) for user, location in placed.items()}
    call_ids = {user: invite_call_id(c, 0, location) for user, location in placed.items()}
    daemon = c.daemons[0]
    assert health(daemon) == (200, {"buffered writes": "0", "dropped writes": "0"})

    c.redis.stop()
    wait_for(lambda: daemon.health() == 503)
    for user, _ in users:  # more writes than the buffer holds: three calls' ends
        cue(c, user, call_ids[user])
    for user, phone in phones.items():
        assert phone.wait(20) == 0, (user, phone.errors())
    code, figures = health(daemon)
    dropped = int(figures["dropped writes"])
    assert code == 503 and figures["buffered writes"] == str(bound) and dropped > 0
    assert f"Redis write buffer full ({bound}): 1 writes dropped so far" in daemon.log_text()

    c.redis.start()
    wait_for(lambda: health(daemon) == (200, {"buffered writes": "0",
                                              "dropped writes": str(dropped)}))
    missing = 0
    for user, location in placed.items():
        got = lines(c, 0, location)
        assert got[:len(before[user])] == before[user]
        after = got[len(before[user]):]
        # what is there is in order; what is missing was dropped and counted
        assert after == [line for line in AFTER_CUE if line in after], (user, got)
        missing += len(AFTER_CUE) - len(after)
    assert 0 < missing <= dropped
    assert daemon.process.poll() is None
    no_traceback(daemon)
    phone = c.phone("user1", "refer_transferee")  # and calls are placed again
    code, _, body = post(c, 0, "/callcontroller/user1/2002")
    assert code == 200, body
    assert phone.wait(20) == 0, phone.errors()
