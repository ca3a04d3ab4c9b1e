"""
What an integrating client (a CRM's "call" button) relies on, over real sockets: a retried
POST with an Idempotency-Key rings the phone once; status callbacks arrive numbered, signed
(checked here by an independent receiver) and filtered by statusCallbackEvent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.daemon import run_twistd, write_config
from tests.integration.e2e import curl, wait_for

SECRET = b"test-signing-key-0123456789"
MAX_AGE = 300  # seconds: older signatures are refused, as the README's receiver does


def curl_headers(*args: str) -> tuple[int, dict[str, str], str]:
    """(status, lower-cased headers, body) of a curl request."""
    code, text = curl("-i", *args)
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    headers = {}
    for line in head.split("\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return code, headers, body


class Receiver:
    """A webhook receiver that checks every delivery's signature itself (hmac, hashlib)."""

    def __init__(self, secret: bytes):
        self.documents: list[dict] = []
        self.problems: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.check(self.headers.get("X-Sipxcc-Signature"), body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.secret = secret
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def check(self, header: str | None, body: bytes) -> None:
        if header is None:
            self.problems.append("no signature")
            return
        fields = dict(part.split("=", 1) for part in header.split(","))
        mac = hmac.new(self.secret, fields["t"].encode() + b"." + body, hashlib.sha256)
        if not hmac.compare_digest(mac.hexdigest(), fields["v1"]):
            self.problems.append(f"bad signature {header}")
        if abs(time.time() - int(fields["t"])) > MAX_AGE:
            self.problems.append(f"old timestamp {fields['t']}")
        self.documents.append(json.loads(body))

    def ended(self):
        return [d for d in self.documents if d.get("ended")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = Receiver(SECRET)
    yield made
    made.close()


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "callback.key"
    path.write_bytes(SECRET + b"\n")
    os.chmod(path, 0o600)
    return path


def test_a_retried_post_with_the_same_key_rings_the_phone_once(setup):
    s = setup()
    phone = s.phone("user1", "refer_transferee")
    post = ("-X", "POST", "-u", "user1:123", "-H", "Idempotency-Key: crm-ticket-4711")
    code, first, body = curl_headers(*post, s.url("/callcontroller/user1/user2"))
    assert code == 200, body
    assert "idempotent-replayed" not in first
    code, again, body_again = curl_headers(*post, s.url("/callcontroller/user1/user2"))
    assert code == 200 and body_again == body
    assert again["idempotent-replayed"] == "true"
    assert again["location"] == first["location"]
    # the same key with other parameters
    code, _, body = curl_headers(*post, s.url("/callcontroller/user1/user2?timeout=30"))
    assert code == 422 and "Idempotency-Key" in body
    # a malformed key
    code, _, body = curl_headers("-X", "POST", "-u", "user1:123", "-H",
                                 "Idempotency-Key: " + "k" * 256,
                                 s.url("/callcontroller/user1/user2"))
    assert code == 400 and "Idempotency-Key" in body
    assert phone.wait(20) == 0, phone.errors()
    # the phone saw one call: one INVITE dialog, one REFER
    invites = phone.received("INVITE")
    call_ids = {line for message in invites for line in message.splitlines()
                if line.lower().startswith("call-id:")}
    assert len(call_ids) == 1, invites
    assert len(phone.received("REFER")) == 1
    code, listing = curl("-u", "user1:123", "-H", "Accept: application/json",
                         s.url("/calls"))
    assert code == 200 and len(json.loads(listing)["calls"]) == 1
    # no signing key configured: said once at start-up
    assert s.daemon.log_text().count("calls.callback_secret is not set") == 1


def test_status_callbacks_are_signed_numbered_and_filtered(setup, receiver, secret_file):
    s = setup(calls_callback_hosts="127.0.0.1", calls_callback_ports=receiver.port,
              calls_callback_secret=str(secret_file))
    phone = s.phone("user1", "refer_transferee")
    hook = f"http://127.0.0.1:{receiver.port}/hook"
    code, body = curl("-X", "POST", "-u", "user1:123", "--data-urlencode",
                      f"statusCallback={hook}", "--data-urlencode",
                      "statusCallbackEvent=ringing,answered,completed", "-G",
                      s.url("/callcontroller/user1/user2"))
    assert code == 200, body
    assert phone.wait(20) == 0, phone.errors()
    wait_for(receiver.ended)
    assert receiver.problems == []
    assert "calls.callback_secret is not set" not in s.daemon.log_text()
    events = [(d["sequence"], d["event"]) for d in receiver.documents]
    assert events == [(1, "ringing"), (2, "answered"), (3, "completed")]
    assert receiver.documents[0]["status-line"] == "SIP/2.0 180 Ringing"


def test_without_a_filter_every_event_arrives_gap_free(setup, receiver):
    s = setup(calls_callback_hosts="127.0.0.1", calls_callback_ports=receiver.port,
              calls_callback_secret=SECRET.decode())
    phone = s.phone("user1", "refer_transferee")
    hook = f"http://127.0.0.1:{receiver.port}/hook"
    code, body = curl("-X", "POST", "-u", "user1:123", "--data-urlencode",
                      f"statusCallback={hook}", "-G", s.url("/callcontroller/user1/user2"))
    assert code == 200, body
    assert phone.wait(20) == 0, phone.errors()
    wait_for(receiver.ended)
    assert receiver.problems == []
    sequences = [d["sequence"] for d in receiver.documents]
    assert sequences == list(range(1, len(sequences) + 1))
    names = [d["event"] for d in receiver.documents]
    assert names[-1] == "completed" and "transferring" in names and "connected" in names


def test_a_group_readable_secret_file_stops_start_up_with_one_line(tmp_path):
    path = tmp_path / "callback.key"
    path.write_bytes(SECRET)
    os.chmod(path, 0o640)
    config = write_config(tmp_path, calls_callback_secret=str(path))
    result = run_twistd("-n", "--pidfile=", "sipxcc", "--config", str(config))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "calls.callback_secret" in lines[0] and "chmod 600" in lines[0]
