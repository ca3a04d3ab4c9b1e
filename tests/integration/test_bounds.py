"""
Bounds on what a far end or a user can make the daemon keep, and on where status callbacks
go, over real sockets: the real daemon under twistd, a fake phone on UDP as its proxy,
curl as the client and small HTTP servers as callback targets.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time

import pytest

from sipxcc.calls.call import MAX_EVENTS
from tests.integration.daemon import Daemon, write_config
from tests.integration.e2e import curl, status_lines, wait_for


class BusyPhone:
    """
    A UDP phone (the daemon's proxy, so every INVITE comes here) that answers each INVITE
    with C{ringing} 180s, each with a new RSeq, then 486 Busy Here, resent until the ACK.
    """

    def __init__(self, ringing: int = 0):
        self.ringing = ringing
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.invites = 0
        self.acked: set[str] = set()
        self.pending: dict[str, tuple[bytes, tuple, float, int]] = {}  # call-id -> 486
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BusyPhone:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.running = False
        self.thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        while self.running:
            try:
                data, peer = self.sock.recvfrom(65536)
            except TimeoutError:
                data = None
            if data is not None:
                self._handle(data.decode("utf-8", "replace"), peer)
            now = time.monotonic()
            for call_id, (busy, to, sent, tries) in list(self.pending.items()):
                if now - sent >= 0.5 and tries < 8:
                    self.sock.sendto(busy, to)
                    self.pending[call_id] = (busy, to, now, tries + 1)

    def _handle(self, text: str, peer) -> None:
        head = text.split("\r\n\r\n", 1)[0].split("\r\n")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        call_id = headers.get("call-id", "")
        if head[0].startswith("ACK "):
            self.acked.add(call_id)
            self.pending.pop(call_id, None)
            return
        if not head[0].startswith("INVITE ") or call_id in self.pending:
            return
        self.invites += 1
        copied = [line for line in head[1:]
                  if line.split(":", 1)[0].strip().lower() in ("via", "from", "call-id", "cseq")]
        to = headers["to"] + ";tag=busy" + str(self.invites)

        def response(status: str, *extra: str) -> bytes:
            return "\r\n".join([f"SIP/2.0 {status}", *copied, f"To: {to}", *extra,
                                "Content-Length: 0", "", ""]).encode()
        for rseq in range(1, self.ringing + 1):
            self.sock.sendto(response("180 Ringing", "Require: 100rel", f"RSeq: {rseq}"), peer)
            if rseq % 50 == 0:
                time.sleep(0.002)  # pacing, so the daemon's socket buffer keeps up
        busy = response("486 Busy Here")
        self.sock.sendto(busy, peer)
        self.pending[call_id] = (busy, peer, time.monotonic(), 0)


def start_daemon(tmp_path, phone: BusyPhone, **config) -> Daemon:
    path = write_config(tmp_path, sip_proxy=f"sip:127.0.0.1:{phone.port};lr", **config)
    daemon = Daemon(path)
    daemon.start()
    return daemon


def post(daemon: Daemon, path: str, *curl_args: str) -> str:
    """POST with curl from a trusted address; returns the call's /calls/{id} path."""
    code, body = curl("-X", "POST", *curl_args, "-w", "\n%header{location}\n%{http_code}",
                      daemon.https_url + path)
    body, _, location = body.rpartition("\n")
    assert code == 200, body
    return location


def document(daemon: Daemon, location: str) -> tuple[int, str]:
    return curl(daemon.https_url + location)


def failed(daemon: Daemon, location: str) -> bool:
    code, body = curl("-H", "Accept: application/json", daemon.https_url + location)
    return code == 200 and json.loads(body)["state"] == "failed"


def test_thousands_of_180s_keep_at_most_the_cap_and_the_outcome_shows(tmp_path):
    with BusyPhone(ringing=5000) as phone:
        daemon = start_daemon(tmp_path, phone)
        try:
            location = post(daemon, "/callcontroller/user1/user2")
            wait_for(lambda: failed(daemon, location), timeout=30)
            code, body = document(daemon, location)
        finally:
            daemon.stop()
    assert code == 200
    lines = status_lines(body)
    assert lines.count(("INVITE", "SIP/2.0 180 Ringing")) == MAX_EVENTS
    assert lines[-1] == ("INVITE", "SIP/2.0 486 Busy Here")
    assert len(lines) == MAX_EVENTS + 1
    assert len(body) < 64 * 1024


def test_a_users_fast_failing_calls_beyond_its_cap_evict_its_oldest_only(tmp_path):
    cap = 5
    with BusyPhone() as phone:
        daemon = start_daemon(tmp_path, phone, calls_max_retained_per_owner=cap)
        try:
            others = [post(daemon, f"/callcontroller/user4/30{n}") for n in range(2)]
            mine = [post(daemon, f"/callcontroller/user1/40{n}") for n in range(cap + 3)]
            wait_for(lambda: all(failed(daemon, call) for call in others + mine[-cap:]),
                     timeout=30)
            codes = {call: document(daemon, call)[0] for call in others + mine}
            log = wait_for(lambda: "calls.max_retained_per_owner = 5" in daemon.log_text()
                           and daemon.log_text())
        finally:
            daemon.stop()
    assert [codes[call] for call in mine] == [404] * 3 + [200] * cap
    assert [codes[call] for call in others] == [200, 200]
    summaries = [line for line in log.splitlines() if "finished calls early" in line]
    assert len(summaries) == 1 and "user1@sipx.test" in summaries[0]


class Recorder(http.server.ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 recording each request; answers C{answer(path)}."""

    daemon_threads = True

    def __init__(self, answer=lambda path: (204, {})):
        self.requests: list[tuple[str, str, bytes]] = []
        self.answer = answer
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                recorder.requests.append((self.command, self.path, self.rfile.read(length)))
                status, headers = recorder.answer(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = handle_one

            def log_message(self, *args):
                pass
        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def recorders():
    made: list[Recorder] = []

    def make(**kwargs) -> Recorder:
        made.append(Recorder(**kwargs))
        return made[-1]
    yield make
    for recorder in made:
        recorder.close()


def test_a_redirect_from_an_allowed_host_is_not_followed_and_counts_as_failed(
        tmp_path, recorders):
    internal = recorders()
    allowed = recorders(answer=lambda path: (
        303, {"Location": f"http://127.0.0.1:{internal.port}/internal"}))
    with BusyPhone() as phone:
        daemon = start_daemon(tmp_path, phone, calls_callback_hosts="127.0.0.1",
                              calls_callback_ports=allowed.port)
        try:
            post(daemon, "/callcontroller/user1/user2", "-G", "--data-urlencode",
                 f"statusCallback=http://127.0.0.1:{allowed.port}/hook")
            # the first event is posted, answered 303, and posted again after the back-off
            wait_for(lambda: len(allowed.requests) >= 2, timeout=20)
        finally:
            daemon.stop()
    first, second = allowed.requests[:2]
    assert first[0] == second[0] == "POST" and first[1] == second[1] == "/hook"
    assert first[2] == second[2]  # the same event again: it was not delivered
    assert internal.requests == []


def test_a_callback_url_on_a_port_not_allowed_gets_nothing(tmp_path, recorders):
    listed, unlisted = recorders(), recorders()
    with BusyPhone() as phone:
        daemon = start_daemon(tmp_path, phone, calls_callback_hosts="127.0.0.1",
                              calls_callback_ports=listed.port)
        try:
            location = post(daemon, "/callcontroller/user1/user2", "-G", "--data-urlencode",
                            f"statusCallback=http://127.0.0.1:{unlisted.port}/hook")
            wait_for(lambda: failed(daemon, location), timeout=20)
            wait_for(lambda: f"port {unlisted.port} is not in calls.callback_ports"
                     in daemon.log_text())
            # the same daemon still delivers to the listed port
            post(daemon, "/callcontroller/user1/user4", "-G", "--data-urlencode",
                 f"statusCallback=http://127.0.0.1:{listed.port}/hook")
            wait_for(lambda: any(b'"ended": true' in body for _, _, body in listed.requests))
        finally:
            daemon.stop()
    assert unlisted.requests == []


def test_a_listed_name_that_resolves_to_loopback_is_refused_unless_the_address_is_listed(
        tmp_path, recorders):
    hook = recorders()
    with BusyPhone() as phone:
        daemon = start_daemon(tmp_path, phone, calls_callback_hosts="localhost",
                              calls_callback_ports=hook.port)
        try:
            location = post(daemon, "/callcontroller/user1/user2", "-G", "--data-urlencode",
                            f"statusCallback=http://localhost:{hook.port}/hook")
            wait_for(lambda: failed(daemon, location), timeout=20)
            wait_for(lambda: "localhost resolves to no allowed address" in daemon.log_text())
        finally:
            daemon.stop()
    assert hook.requests == []
    with BusyPhone() as phone:
        daemon = start_daemon(tmp_path, phone, calls_callback_hosts="localhost 127.0.0.1",
                              calls_callback_ports=hook.port)
        try:
            post(daemon, "/callcontroller/user1/user2", "-G", "--data-urlencode",
                 f"statusCallback=http://localhost:{hook.port}/hook")
            wait_for(lambda: any(b'"ended": true' in body for _, _, body in hook.requests))
        finally:
            daemon.stop()
    assert all(path == "/hook" for _, path, _ in hook.requests)
