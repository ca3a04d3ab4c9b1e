"""
Faults, end to end (issue 8): a lossy and duplicating SIP path, the proxy going away
mid-call (TCP reset), a user directory replaced by garbage, a graceful stop with 100
calls ringing, and a restart. Calls complete or fail cleanly, each status is recorded
once, and nothing stays active.
"""

from __future__ import annotations

import http.client
import json
import signal

from tests.integration import hostile
from tests.integration.daemon import Daemon, free_ports, write_config
from tests.integration.e2e import curl, status_lines, wait_for
from tests.integration.peers import demo_aliases, demo_ha1s


def test_lossy_duplicating_path_completes_the_call(tmp_path, kamailio_factory,
                                                  phone_factory):
    run_through_relay(tmp_path, kamailio_factory, phone_factory, drop_every=4,
                      duplicate_every=3, provisional_once=False)


def test_duplicated_provisional_responses_are_recorded_once(tmp_path, kamailio_factory,
                                                            phone_factory):
    run_through_relay(tmp_path, kamailio_factory, phone_factory, drop_every=0,
                      duplicate_every=1, provisional_once=True)


def run_through_relay(tmp_path, kamailio_factory, phone_factory, *, drop_every: int,
                      duplicate_every: int, provisional_once: bool) -> None:
    """A REFER call with the relay between the daemon and Kamailio; checks the record."""
    sip_port, proxy_port, phone_port = free_ports(3)
    relay = hostile.LossyRelay(proxy_port, drop_every=drop_every,
                               duplicate_every=duplicate_every)
    relay_back = relay.back.getsockname()[1]
    kamailio_factory({"user1": f"sip:user1@127.0.0.1:{phone_port}"},
                     f"127.0.0.1:{relay_back}", port=proxy_port, users=demo_ha1s(),
                     aliases=demo_aliases())
    relay.start()
    daemon = Daemon(write_config(tmp_path, sip_port=sip_port,
                                 sip_proxy=f"sip:127.0.0.1:{relay.port};lr"))
    try:
        daemon.start()
        phone = phone_factory("refer_transferee", phone_port)
        code, _ = curl("-X", "POST", daemon.https_url + "/callcontroller/user1/user2")
        assert code == 200
        phone_code = phone.wait(30)
        try:
            wait_for(lambda: not hostile.active_calls(daemon), timeout=20)
        except AssertionError:
            raise AssertionError(f"phone {phone_code}: {hostile.active_calls(daemon)}\n"
                                 f"{curl(daemon.https_url + '/callcontroller/user1/user2')}"
                                 f"\n{phone.errors()[-1500:]}") from None
        lines = status_lines(curl(daemon.https_url + "/callcontroller/user1/user2")[1])
        call = json.loads(daemon.get(
            "/calls", headers={"Accept": "application/json"})[1])["calls"][0]
        assert phone_code == 0, phone.errors()  # the phone saw its whole scenario
        assert call["state"] == "ended", lines
        assert relay.duplicated and (relay.dropped or not drop_every)
        # a retransmitted or duplicated response is absorbed, never recorded twice
        finals = [line for line in lines
                  if provisional_once or not line[1].startswith("SIP/2.0 1")]
        assert len(finals) == len(set(finals)), lines
        for line in (("INVITE", "SIP/2.0 200 OK"), ("REFER", "SIP/2.0 202 Accepted"),
                     ("NOTIFY", "SIP/2.0 200 OK")):
            assert lines.count(line) == 1, (line, lines)
    finally:
        daemon.stop()
        relay.stop()


def test_proxy_gone_mid_call_over_tcp_fails_the_call_cleanly(setup):
    s = setup(transport="tcp")
    phone = s.phone("user1", "caller_no_answer")
    code, _ = curl("-X", "POST", s.url("/callcontroller/user1/user2?timeout=3"))
    assert code == 200
    wait_for(lambda: phone.received("INVITE"))
    wait_for(lambda: ("INVITE", "SIP/2.0 180 Ringing") in status_lines(
        curl(s.url("/callcontroller/user1/user2"))[1]))
    s.proxy.stop()  # the TCP connection to the proxy goes away mid-transaction
    # §9.1: a CANCEL without answer ends the INVITE transaction after 64*T1 (32 s)
    wait_for(lambda: not hostile.active_calls(s.daemon), timeout=40)
    _, body = s.daemon.get("/calls", headers={"Accept": "application/json"})
    assert json.loads(body)["calls"][0]["state"] == "failed"
    assert s.daemon.health() == 200
    assert "Traceback" not in s.daemon.log_text()


def test_garbage_user_directory_keeps_the_old_users(tmp_path):
    config = write_config(tmp_path, http_trusted="192.0.2.1")
    with Daemon(config) as daemon:
        url = "/callcontroller/user1/user2"
        authorization = {"Authorization": "Basic dXNlcjE6MTIz"}  # user1:123
        assert daemon.get(url, headers=authorization)[0] == 200
        (tmp_path / "validusers.xml").write_bytes(b"<validusers><user>\x00\xff garbage")
        wait_for(lambda: "keeping the previous user directory" in daemon.log_text(),
                 timeout=10)
        assert daemon.get(url, headers=authorization)[0] == 200
        assert daemon.health() == 200
        (tmp_path / "validusers.xml").write_bytes(b"")
        wait_for(lambda: daemon.log_text().count("keeping the previous") >= 2, timeout=10)
        assert daemon.get(url, headers=authorization)[0] == 200


def test_graceful_stop_cancels_100_ringing_calls_and_restart_is_clean(setup):
    calls = 100
    s = setup(calls_max_calls_per_agent=calls + 10)
    phone = s.phone("user1", "caller_no_answer", calls=None)
    connection = http.client.HTTPSConnection("127.0.0.1", s.daemon.config.http.https,
                                             context=hostile.tls_context(), timeout=10)
    try:
        for n in range(calls):
            connection.request("POST", f"/callcontroller/user1/{4000 + n}?timeout=120")
            response = connection.getresponse()
            response.read()
            assert response.status == 200, n
    finally:
        connection.close()
    wait_for(lambda: len(phone.received("INVITE")) >= calls, timeout=20)
    wait_for(lambda: len(hostile.active_calls(s.daemon)) == calls, timeout=5)
    s.daemon.process.send_signal(signal.SIGTERM)
    # twistd exits by re-raising the signal it stopped on (wait's 15 s is the deadline)
    assert s.daemon.process.wait(15) == -signal.SIGTERM
    wait_for(lambda: len(phone.received("CANCEL")) >= calls, timeout=5)
    cancelled = {hostile.sip_call_id(m) for m in phone.received("CANCEL")}
    assert len(cancelled) == calls
    # restart on the same ports: up, clean and serving
    s.daemon.start()
    assert s.daemon.health() == 200
    assert hostile.active_calls(s.daemon) == []
    code, _ = curl("-X", "POST", s.url("/callcontroller/user1/4999?timeout=1"))
    assert code == 200
