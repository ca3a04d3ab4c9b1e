"""
``GET /metrics`` and the call log lines over real sockets: a real call through Kamailio to
a sipp phone, then the scrape parsed with prometheus_client's parser, who may read it, and
the two lines the daemon logged for the call.
"""

from __future__ import annotations

import re
import shlex

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.e2e import curl, status_lines, wait_for

UNTRUSTED = "127.0.0.2"


def scrape(s, *args: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, body = curl(*args, s.url("/metrics"))
    assert code == 200, body
    return {(x.name, tuple(sorted(x.labels.items()))): x.value
            for family in text_string_to_metric_families(body) for x in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def pairs(line: str) -> dict[str, str]:
    return dict(w.split("=", 1) for w in shlex.split(line) if "=" in w)


def test_a_real_call_moves_the_counters_and_logs_two_lines(setup):
    s = setup()
    before = scrape(s)
    assert value(before, "sipxcc_calls_placed_total", mode="REFER") == 0
    phone = s.phone("user1", "refer_transferee")
    code, body = curl("-X", "POST", "-u", "user1:123", s.url("/callcontroller/user1/user2"))
    assert code == 200, body
    assert phone.wait(20) == 0, phone.errors()
    wait_for(lambda: ("NOTIFY", "SIP/2.0 200 OK") in status_lines(
        curl(s.url("/callcontroller/user1/user2"))[1]))
    after = wait_for(lambda: (lambda m: m if value(
        m, "sipxcc_calls_in_progress") == 0 else None)(scrape(s)))

    assert value(after, "sipxcc_calls_placed_total", mode="REFER") == 1
    finished = {labels: v for (name, labels), v in after.items()
                if name == "sipxcc_calls_finished_total"}
    assert finished == {(("mode", "REFER"), ("outcome", "ended")): 1}
    assert value(after, "sipxcc_calls_retained") == 1
    # INVITE, its challenge and the INVITE again; REFER; our BYE after the NOTIFY
    assert value(after, "sipxcc_sip_requests_total", direction="sent", method="INVITE") == 2
    assert value(after, "sipxcc_sip_requests_total", direction="sent", method="REFER") == 1
    assert value(after, "sipxcc_sip_requests_total", direction="sent", method="BYE") == 1
    assert value(after, "sipxcc_sip_requests_total", direction="received",
                 method="NOTIFY") >= 1
    assert value(after, "sipxcc_sip_responses_total", direction="received",
                 **{"class": "2xx"}) >= 3  # 200 to the INVITE, 202 to the REFER, 200 to BYE
    assert value(after, "sipxcc_sip_responses_total", direction="received",
                 **{"class": "4xx"}) == 1  # Kamailio's 407
    assert value(after, "sipxcc_sip_transaction_timeouts_total", method="INVITE") == 0
    assert value(after, "sipxcc_call_answer_seconds_count") == 1
    assert value(after, "sipxcc_call_connect_seconds_count") == 1
    assert value(after, "sipxcc_http_requests_total", route="callcontroller",
                 code="200") >= 2

    log = s.daemon.log_text()
    [start] = [line for line in log.splitlines() if "call started" in line]
    [end] = [line for line in log.splitlines() if "call ended" in line]
    started, ended = pairs(start[start.index("call started"):]), pairs(
        end[end.index("call ended"):])
    assert started == {"id": started["id"], "agent": "user1@sipx.test",
                       "calling": "user1@sipx.test", "called": "user2@sipx.test",
                       "mode": "REFER"}
    assert ended["id"] == started["id"]
    assert ended["outcome"] == "ended"
    assert ended["status"] == "200"
    assert re.fullmatch(r"\d+\.\d\d", ended["ring_time"])
    assert re.fullmatch(r"\d+\.\d\d", ended["connected_time"])
    assert "123" not in start + end  # the PIN


def test_a_busy_phone_is_a_failed_call_with_its_status_in_the_log(setup):
    s = setup()
    phone = s.phone("user1", "caller_busy")
    code, _ = curl("-X", "POST", s.url("/callcontroller/user1/user2"))
    assert code == 200
    assert phone.wait(20) == 0, phone.errors()
    after = wait_for(lambda: (lambda m: m if value(
        m, "sipxcc_calls_in_progress") == 0 else None)(scrape(s)))
    assert value(after, "sipxcc_calls_finished_total", mode="REFER", outcome="failed") == 1
    assert value(after, "sipxcc_call_answer_seconds_count") == 0
    end = wait_for(lambda: [line for line in s.daemon.log_text().splitlines()
                            if "call ended" in line])
    ended = pairs(end[0][end[0].index("call ended"):])
    assert (ended["outcome"], ended["status"], ended["reason"], ended["method"]) == (
        "failed", "486", "Busy Here", "INVITE")


def test_only_trusted_hosts_and_agents_may_read_the_metrics(setup):
    s = setup()
    assert curl("--interface", UNTRUSTED, s.url("/metrics"))[0] == 401
    code, body = curl("--interface", UNTRUSTED, "-u", "user1:123", s.url("/metrics"))
    assert code == 403
    assert "sipxcc_" not in body
    samples = scrape(s, "--interface", UNTRUSTED, "-u", "user3:123")  # in users.agents
    assert value(samples, "sipxcc_http_auth_failures_total") == 2
    assert value(samples, "sipxcc_http_requests_total", route="metrics", code="403") == 1
