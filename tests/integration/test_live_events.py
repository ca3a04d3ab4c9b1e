"""
Live events over real sockets: the daemon, Kamailio with digest auth, a sipp phone, and
curl -N as the client reading the event stream as a person would.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import threading

from tests.integration.e2e import curl, wait_for
from tests.integration.test_bounds import BusyPhone, failed, post, start_daemon

UNTRUSTED = ("--interface", "127.0.0.2")  # not in http.trusted: credentials count
NAMED = ("initiated", "ringing", "answered", "transferring", "connected")


def parse(text: str) -> list[tuple[str, str, dict]]:
    """The (id, event, data) of each SSE event in C{text}."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n")[:-1]:  # complete ones only
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if ": " in line and not line.startswith(":"))
        if "id" in fields:
            events.append((fields["id"], fields["event"], json.loads(fields["data"])))
    return events


def stream(url: str, *args: str, max_time: int = 40) -> subprocess.Popen:
    return subprocess.Popen(["curl", "-sSkN", "--max-time", str(max_time), *args, url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(process: subprocess.Popen) -> None:
    """End a curl this test started, and close its pipes."""
    if process.poll() is None:
        process.terminate()
    process.communicate(timeout=10)


def read_events(process: subprocess.Popen, count: int) -> list[tuple[str, str, dict]]:
    """Read C{process}'s output until it holds C{count} events (or it ends)."""
    text = ""
    while len(parse(text)) < count:
        line = process.stdout.readline()
        if not line:
            break
        text += line
    return parse(text)


def place(s, user: str = "user1") -> str:
    code, body = curl("-X", "POST", "-u", f"{user}:123", "-H", "Accept: application/json",
                      "-D", "-", s.url(f"/callcontroller/{user}/user2"))
    assert code == 200, body
    location = next(line for line in body.splitlines() if line.lower().startswith("location:"))
    return location.split("/calls/", 1)[1].strip()


def test_a_calls_stream_shows_its_progress_in_order_and_ends(setup):
    s = setup()
    phone = s.phone("user1", "refer_transferee")
    call_id = place(s)
    reader = stream(s.url(f"/calls/{call_id}/events"), *UNTRUSTED, "-u", "user1:123")
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err  # the daemon ended the stream with the call
    assert phone.wait(20) == 0, phone.errors()
    events = parse(out)
    assert [int(i) for i, _, _ in events] == list(range(1, len(events) + 1))
    kinds = [kind for _, kind, _ in events]
    assert [k for k in kinds if k in NAMED] == list(NAMED)
    assert kinds[-1] == "completed" and events[-1][2]["state"] == "ended"
    lines = [(d["method"], d["status-line"]) for _, _, d in events if "method" in d]
    assert ("NOTIFY", "SIP/2.0 200 OK") in lines
    # the same lines as the JSON status document, in the same order
    code, body = curl("-u", "user1:123", *UNTRUSTED, "-H", "Accept: application/json",
                      s.url(f"/calls/{call_id}"))
    assert [(e["method"], e["status-line"]) for e in json.loads(body)["status-lines"]] == lines


def test_last_event_id_resumes_with_exactly_the_missing_events(setup):
    s = setup()
    phone = s.phone("user1", "refer_transferee")
    call_id = place(s)
    url = s.url(f"/calls/{call_id}/events")
    whole = stream(url, "-u", "user1:123", *UNTRUSTED)
    first = stream(url, "-u", "user1:123", *UNTRUSTED)
    head = read_events(first, 3)
    stop(first)
    assert len(head) == 3
    rest = stream(url, "-u", "user1:123", *UNTRUSTED, "-H", f"Last-Event-ID: {head[-1][0]}")
    tail_out, _ = rest.communicate(timeout=60)
    whole_out, _ = whole.communicate(timeout=60)
    assert phone.wait(20) == 0, phone.errors()
    assert head + parse(tail_out) == parse(whole_out)


def test_another_users_call_is_refused_as_get_refuses_it(setup):
    s = setup()
    phone = s.phone("user1", "refer_transferee")
    call_id = place(s)
    get, _ = curl(*UNTRUSTED, "-u", "user2:123", s.url(f"/calls/{call_id}"))
    events, body = curl(*UNTRUSTED, "-u", "user2:123", "--max-time", "10",
                        s.url(f"/calls/{call_id}/events"))
    assert get == events == 404, body
    wrong_pin, _ = curl(*UNTRUSTED, "-u", "user1:999", s.url(f"/calls/{call_id}/events"))
    assert wrong_pin == 401
    assert phone.wait(20) == 0, phone.errors()


def test_streams_beyond_a_users_cap_are_429_and_a_closed_one_frees_its_place(setup):
    s = setup(http_max_streams_per_user=2)
    url = s.url("/events")
    open_ = [stream(url, *UNTRUSTED, "-u", "user1:123") for _ in range(2)]
    try:
        for reader in open_:  # each has its answer's head and the retry line
            assert reader.stdout.readline().startswith("retry:")
        code, body = curl(*UNTRUSTED, "-u", "user1:123", "--max-time", "10", url)
        assert code == 429 and "Too many event streams" in body
        other = stream(url, *UNTRUSTED, "-u", "user2:123")
        assert other.stdout.readline().startswith("retry:")  # another user is served
        stop(other)
        stop(open_[0])

        def admitted():
            again = stream(url, *UNTRUSTED, "-u", "user1:123", max_time=3)
            out, _ = again.communicate(timeout=20)
            return out.startswith("retry:")
        assert wait_for(admitted)
    finally:
        for reader in open_:
            stop(reader)


def test_all_events_show_a_user_its_own_calls_live(setup):
    s = setup()
    reader = stream(s.url("/events"), *UNTRUSTED, "-u", "user1:123")
    assert reader.stdout.readline().startswith("retry:")
    phone = s.phone("user1", "refer_transferee")
    call_id = place(s)
    text = ""
    while not any(kind == "completed" for _, kind, _ in parse(text)):
        line = reader.stdout.readline()  # curl ends it at its --max-time at the latest
        assert line, "the stream ended before the call did"
        text += line
    events = parse(text)
    stop(reader)
    assert phone.wait(20) == 0, phone.errors()
    assert {d["call"] for _, _, d in events} == {call_id}
    assert [i for i, _, _ in events] == [f"{call_id}:{n}" for n in range(1, len(events) + 1)]
    assert events[-1][1] == "completed"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


class LongRinging:
    """A BusyPhone's socket whose 180s carry a long reason phrase (more bytes per event)."""

    REASON = b"SIP/2.0 180 Ringing " + b"r" * 400 + b"\r\n"

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def sendto(self, data: bytes, peer) -> int:
        return self._sock.sendto(data.replace(b"SIP/2.0 180 Ringing\r\n", self.REASON), peer)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def test_a_reader_that_never_reads_is_dropped_while_others_are_served(tmp_path):
    # the daemon's kernel send buffer grows to 4 MiB on loopback: send it more than that
    calls, ringing = 60, 100
    phone = BusyPhone(ringing=ringing)
    phone.sock = LongRinging(phone.sock)
    with phone:
        daemon = start_daemon(tmp_path, phone, calls_max_calls_per_agent=calls)
        slow = None
        try:
            # a client that takes its TLS handshake and then reads nothing, with a small
            # receive window so that what is sent to it piles up on the daemon's side
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.connect(("127.0.0.1", daemon.config.http.https))
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            slow = context.wrap_socket(raw)
            slow.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            fast = stream(daemon.https_url + "/events", max_time=90)
            assert fast.stdout.readline().startswith("retry:")
            lines: list[str] = []  # the reader that reads, reading all the time
            reading = threading.Thread(target=lambda: lines.extend(iter(fast.stdout.readline, "")),
                                       daemon=True)
            reading.start()
            before = rss_kib(daemon.process.pid)
            placed = [post(daemon, f"/callcontroller/user1/40{n}") for n in range(calls)]
            wait_for(lambda: all(failed(daemon, call) for call in placed), timeout=60)
            wait_for(lambda: "dropping a live event stream" in daemon.log_text(), timeout=20)
            wait_for(lambda: sum(kind == "failed" and "state" in data
                                 for _, kind, data in parse("".join(lines))) == calls,
                     timeout=30)
            stop(fast)
            reading.join(10)
            text = "".join(lines)
            grown = rss_kib(daemon.process.pid) - before
        finally:
            if slow is not None:
                slow.close()
            daemon.stop()
    by_call: dict[str, list[int]] = {}
    for _, _, data in parse(text):
        by_call.setdefault(data["call"], []).append(data["seq"])
    # the reader that reads got every event of every call (UDP may lose a 180 on the way
    # to the daemon: the numbers are what the daemon recorded), without a gap
    assert len(by_call) == calls
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_call.values())
    assert len(text.encode()) > 2 * 1024 * 1024  # the slow reader missed megabytes
    # what the slow reader was sent stays within its budget: far less than all it missed
    assert grown < 20_000, f"the daemon grew by {grown} KiB"
    print(f"daemon RSS grew {grown} KiB over {sum(map(len, by_call.values()))} events")


def test_stopping_the_daemon_ends_the_open_streams(setup):
    s = setup()
    readers = [stream(s.url("/events"), *UNTRUSTED, "-u", "user1:123"),
               stream(s.url("/events"))]
    for reader in readers:
        assert reader.stdout.readline().startswith("retry:")
    assert s.daemon.stop() == -signal.SIGTERM  # twistd re-raises the signal that stopped it
    assert "Main loop terminated." in s.daemon.log_text()
    for reader in readers:
        reader.communicate(timeout=20)
        assert reader.returncode == 0  # the stream ended as HTTP says, not cut off
