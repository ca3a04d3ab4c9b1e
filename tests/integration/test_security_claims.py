"""
SECURITY.md's logging claim, end to end: the daemon at log level debug never logs a PIN,
an HA1 (pintoken or passtoken) or the value of an Authorization / Proxy-Authorization
header -- not for good credentials, wrong ones, garbage, nor for a click-to-call whose
INVITE and REFER carry Proxy-Authorization through Kamailio.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess

from tests.integration.daemon import DEMO_VALIDUSERS
from tests.integration.e2e import curl, status_lines, wait_for

REALM = "sipx.test"
# PINs long and odd enough that finding one in the log cannot be a coincidence
PINS = {"user1": "730291845", "user2": "648203917", "user3": "915372846",
        "user4": "402719583"}
WRONG_PIN = "556019374"
MARKER = "Zq8sEcReTmArKeR"  # inside every garbage Authorization header
GARBAGE_AUTHORIZATION = [
    f"Basic {MARKER}!!",
    f"Basic {base64.b64encode(f'user1:{MARKER}'.encode()).decode()}",
    f'Digest username="user1", realm="{REALM}", nonce="{MARKER}", uri="/x", '
    f'response="{MARKER}0000000000000000", qop=auth, nc=00000001, cnonce="{MARKER}"',
    f"Bearer {MARKER}",
    f"Digest {MARKER}=",
]


def pintoken(user: str, pin: str) -> str:
    return hashlib.md5(f"{user}:{REALM}:{pin}".encode()).hexdigest()


def write_users(path) -> list[str]:
    """The demo users with PINS instead of 123; returns every HA1 the file holds."""
    text = DEMO_VALIDUSERS.read_text()
    for user, pin in PINS.items():
        text = re.sub(rf"(<userName>{user}</userName>.*?<pintoken>)[0-9a-f]{{32}}",
                      lambda m, u=user, p=pin: m.group(1) + pintoken(u, p), text, flags=re.S)
    path.write_text(text)
    return re.findall(r"<(?:pin|pass)token>([0-9a-f]{32})<", text)


def curl_verbose(*args: str) -> tuple[int, str, str]:
    """curl with -v: (HTTP status, body, curl's trace, which shows the headers it sent)."""
    out = subprocess.run(["curl", "-skv", "-w", "\n%{http_code}", *args],
                         capture_output=True, text=True, timeout=20)
    body, _, code = out.stdout.rpartition("\n")
    return int(code), body, out.stderr


def sent_authorizations(trace: str) -> list[str]:
    return re.findall(r"^> Authorization: (.+?)\r?$", trace, re.M | re.I)


def test_no_pin_ha1_or_authorization_value_is_ever_logged(tmp_path, setup):
    tokens = write_users(tmp_path / "validusers.xml")
    tokens += re.findall(r"<(?:pin|pass)token>([0-9a-f]{32})<", DEMO_VALIDUSERS.read_text())
    # no trusted hosts: loopback must authenticate like anyone else
    s = setup(http_trusted="192.0.2.1")
    https, http = s.daemon.https_url, s.daemon.http_url
    path = "/callcontroller/user1/user2"
    sent: list[str] = []

    # a full click-to-call, Basic over HTTPS; the INVITE and REFER carry Proxy-Authorization
    phone = s.phone("user1", "refer_transferee")
    code, body, trace = curl_verbose("-X", "POST", "-u", f"user1:{PINS['user1']}", https + path)
    assert code == 200, body
    sent += sent_authorizations(trace)
    assert phone.wait(20) == 0, phone.errors()
    lines = wait_for(lambda: (lambda ls: ls if ("NOTIFY", "SIP/2.0 200 OK") in ls else None)(
        status_lines(curl("-u", f"user1:{PINS['user1']}", https + path)[1])))
    # the daemon answered Kamailio's challenge, so its INVITE carried Proxy-Authorization
    assert any(m == "INVITE" and line.startswith("SIP/2.0 407") for m, line in lines)
    proxy_authorizations = [value for message in phone.received()
                            for value in re.findall(r"^Proxy-Authorization: (.+?)\r?$",
                                                    message, re.M | re.I)]

    # Digest that succeeds, over HTTPS and plain HTTP
    for url in (https, http):
        code, body, trace = curl_verbose("--digest", "-u", f"user3:{PINS['user3']}",
                                         url + path + "?agent=user3")
        assert code == 200, (url, body)
        sent += sent_authorizations(trace)
    # credentials that fail: wrong PINs, Basic over plain HTTP, garbage headers
    failing = [
        ("-u", f"user1:{WRONG_PIN}", https + path),
        ("--digest", "-u", f"user2:{WRONG_PIN}", http + path),
        ("--digest", "-u", f"user4:{WRONG_PIN}", https + path),
        ("-u", f"user1:{PINS['user1']}", http + path),  # Basic is refused on plain HTTP
    ] + [("-H", f"Authorization: {header}", url + path)
         for header in GARBAGE_AUTHORIZATION[:3] for url in (https, http)] \
      + [("-H", f"Authorization: {header}", http + path) for header in GARBAGE_AUTHORIZATION[3:]]
    codes = []
    for args in failing:
        code, body, trace = curl_verbose(*args)
        codes.append(code)
        sent += sent_authorizations(trace)
    # 401 each (fewer than the 10 failures that would block 127.0.0.1 with 429)
    assert codes == [401] * len(failing)
    assert s.daemon.health() == 200

    log = s.daemon.log_text() + s.daemon.output_text()
    # the log is really at debug level and saw these requests
    assert "authentication failed from 127.0.0.1" in log
    assert log.count(path) >= len(failing)
    secrets = {f"PIN of {user}": pin for user, pin in PINS.items()}
    secrets["wrong PIN"] = WRONG_PIN
    secrets.update({f"HA1 {token}": token for token in tokens})
    for user, pin in [*PINS.items(), ("user1", WRONG_PIN), ("user2", WRONG_PIN),
                      ("user4", WRONG_PIN)]:
        secrets[f"base64 of {user}:pin"] = base64.b64encode(f"{user}:{pin}".encode()).decode()
    secrets["garbage header marker"] = MARKER
    assert any(value.lower().startswith("digest ") for value in sent)
    for value in sent + proxy_authorizations:
        _scheme, _, credentials = value.partition(" ")
        secrets[f"Authorization value {value[:30]}"] = credentials.strip()
        for name, part in re.findall(r'(response|cnonce|nonce)="?([^",]+)', value):
            secrets[f"{name} of {value[:30]}"] = part
    leaked = [name for name, secret in secrets.items() if secret and secret in log]
    assert not leaked, leaked
    assert not re.search(r'response="', log)
    assert not re.search(r"^.*(?:Proxy-)?Authorization: *(?:Digest|Basic) ", log, re.M | re.I)
