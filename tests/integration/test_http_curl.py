"""The seed's curl examples, run with the real curl against a running daemon.

The daemon trusts only 127.0.0.1; an untrusted client is curl bound to 127.0.0.2
(`--interface`), so the same loopback listener serves both. Its SIP proxy is a port
nobody answers on: POST does not wait for SIP, so it must still answer 200.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from lxml import etree

from tests.integration.daemon import Daemon, write_config

NS = "{http://www.sipfoundry.org/sipX/schema/xml/call-status-00-00}"
UNTRUSTED = "127.0.0.2"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


class Answer:
    def __init__(self, code: int, headers: str, body: bytes):
        self.code, self.headers, self.body = code, headers, body

    def header(self, name: str) -> str | None:
        for line in self.headers.splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def document(self) -> etree._Element:
        return etree.fromstring(self.body)

    def status(self) -> tuple[int, str, int, str]:
        flag, code, text = (e.text for e in self.document())
        return self.code, flag, int(code), text


def curl(*args: str) -> Answer:
    """Run the real curl; add only what is needed to read the status, headers and body."""
    with tempfile.TemporaryDirectory() as scratch:
        head, body = Path(scratch, "head"), Path(scratch, "body")
        result = subprocess.run(
            ["curl", "-sS", "-D", str(head), "-o", str(body), "-w", "%{http_code}", *args],
            capture_output=True, timeout=20, check=False)
        # curl failing (no connection, timeout: HTTP status 000) is never an answer
        assert result.returncode == 0, (args, result.returncode, result.stderr)
        # With --digest the file holds the 401's head first: keep the last one.
        heads = head.read_bytes().decode("latin-1").strip().split("\r\n\r\n") \
            if head.exists() else [""]
        return Answer(int(result.stdout), heads[-1],
                      body.read_bytes() if body.exists() else b"")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(write_config(tmp_path_factory.mktemp("sipxcc"), http_trusted="127.0.0.1")) \
            as running:
        yield running


def placed(answer: Answer) -> None:
    """Assert a POST was accepted: 200, the OK document and the call's Location."""
    assert answer.status() == (200, "OK", 200, "Success")
    assert answer.header("Location").startswith("/calls/")


AUTH_MODES = [pytest.param([], id="basic"), pytest.param(["--digest"], id="digest")]


@pytest.mark.parametrize("mode", AUTH_MODES)
def test_post_as_calling_user(daemon, mode):
    # curl -k -X POST -u user1:123 https://<host>:6666/callcontroller/user1/user2
    placed(curl("-k", *mode, "--interface", UNTRUSTED, "-X", "POST", "-u", "user1:123",
                f"{daemon.https_url}/callcontroller/user1/user2"))


@pytest.mark.parametrize("mode", AUTH_MODES)
def test_post_with_timeout(daemon, mode):
    # curl -k -X POST -u {callingUser}:{pin} https://<host>:6666/callcontroller/...?timeout=
    placed(curl("-k", *mode, "--interface", UNTRUSTED, "-X", "POST", "-u", "user1:123",
                f"{daemon.https_url}/callcontroller/user1/user2?timeout=30"))


@pytest.mark.parametrize("mode", AUTH_MODES)
def test_post_as_agent(daemon, mode):
    # curl -k -X POST -u user3:123 https://<host>:6666/callcontroller/user1/user2?agent=user3
    placed(curl("-k", *mode, "--interface", UNTRUSTED, "-X", "POST", "-u", "user3:123",
                f"{daemon.https_url}/callcontroller/user1/user2?agent=user3"))


@pytest.mark.parametrize("mode", AUTH_MODES)
def test_get_progress_as_calling_user(daemon, mode):
    # curl -k -u user1:123 https://<host>:6666/callcontroller/user1/user2
    answer = curl("-k", *mode, "--interface", UNTRUSTED, "-u", "user1:123",
                  f"{daemon.https_url}/callcontroller/user1/user2")
    assert answer.code == 200 and answer.document().tag == NS + "status-lines"
    assert answer.header("Content-Type") == "text/xml; charset=UTF-8"


@pytest.mark.parametrize("mode", AUTH_MODES)
def test_get_progress_as_agent_from_untrusted_host(daemon, mode):
    # curl -k -u user3:123 -X GET https://<host>:6666/callcontroller/user1/user2?agent=user3
    answer = curl("-k", *mode, "--interface", UNTRUSTED, "-u", "user3:123", "-X", "GET",
                  f"{daemon.https_url}/callcontroller/user1/user2?agent=user3")
    assert answer.code == 200 and answer.document().tag == NS + "status-lines"


def test_get_progress_from_trusted_host_needs_no_password(daemon):
    # curl -k https://<host>:6666/callcontroller/user1/user2?agent=user3
    answer = curl("-k", f"{daemon.https_url}/callcontroller/user1/user2?agent=user3")
    assert answer.code == 200 and answer.document().tag == NS + "status-lines"


def test_same_request_from_untrusted_host_needs_auth(daemon):
    answer = curl("-k", "--interface", UNTRUSTED, "-H", "X-Forwarded-For: 127.0.0.1",
                  "-H", "Host: 127.0.0.1",
                  f"{daemon.https_url}/callcontroller/user1/user2?agent=user3")
    assert answer.status()[:3] == (401, "ERROR", 401)
    assert "Digest" in answer.headers and "Basic" in answer.headers


def test_trusted_post_then_get_shows_the_call(daemon):
    placed(curl("-k", "-X", "POST",
                f"{daemon.https_url}/callcontroller/user2/user4?agent=user3"))
    answer = curl("-k", f"{daemon.https_url}/callcontroller/user2/user4?agent=user3")
    assert answer.code == 200 and answer.document().tag == NS + "status-lines"


def test_wrong_pin_refused(daemon):
    answer = curl("-k", "--interface", UNTRUSTED, "-X", "POST", "-u", "user1:999",
                  f"{daemon.https_url}/callcontroller/user1/user2")
    assert answer.status()[:3] == (401, "ERROR", 401)


def test_plain_http_digest_accepted_basic_refused(daemon):
    url = f"{daemon.http_url}/callcontroller/user1/user2"
    refused = curl("-u", "user1:123", url)
    assert refused.code == 401
    assert "Basic" not in refused.headers and "Digest" in refused.headers
    # Trusted addresses get no exemption over plain HTTP.
    assert curl(url + "?agent=user3").code == 401
    assert curl("--digest", "-u", "user1:123", url).code == 200


def test_acting_for_another_without_agent_rights(daemon):
    answer = curl("-k", "--interface", UNTRUSTED, "-X", "POST", "-u", "user1:123",
                  f"{daemon.https_url}/callcontroller/user2/user4")
    assert answer.status()[:3] == (403, "ERROR", 403)


def test_oversized_url_and_headers(daemon):
    answer = curl("-k", f"{daemon.https_url}/callcontroller/user1/user2?subject=" + "x" * 9000)
    assert answer.status()[:3] == (414, "ERROR", 414)
    assert curl("-k", f"{daemon.https_url}/callcontroller/user1/user2?subject=" + "x" * 9000,
                "-H", "Accept: application/json").code == 414
    # A header line beyond the 16 KiB limit: 431 Request Header Fields Too Large.
    huge = curl("-m", "5", "-H", "X-Big: " + "y" * 70000, f"{daemon.http_url}/health")
    assert huge.code == 431
    huge = curl("-k", "-m", "5", "-H", "X-Big: " + "y" * 70000, f"{daemon.https_url}/health")
    assert huge.code == 431
    assert curl("-k", f"{daemon.https_url}/health").code == 200
