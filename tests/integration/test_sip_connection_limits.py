"""
SIP over TCP under abuse, against the running daemon: connections beyond the caps are
closed at once while other addresses, the proxy and HTTPS are still served; a slowloris
message head is cut off at the deadline; an oversized head closes the connection; and a
request whose Via claims another received/rport is answered at its real source.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.integration import hostile
from tests.integration.daemon import Daemon, write_config
from tests.integration.e2e import wait_for

PROXY = "127.0.0.5"  # the configured proxy's address (nothing listens there)
PER_HOST = 8
TOTAL = 24  # others share TOTAL - PER_HOST; PER_HOST are kept for the proxy


@pytest.fixture
def daemon(tmp_path):
    config = write_config(tmp_path, sip_proxy=f"sip:{PROXY}:5080;lr",
                          sip_max_connections=TOTAL, sip_max_connections_per_host=PER_HOST)
    with Daemon(config) as running:
        yield running


def connect(daemon, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", daemon.sip_port), timeout=5,
                                    source_address=(source, 0))


def options(sock: socket.socket, port: int, timeout: float = 5.0) -> int | None:
    """Send an OPTIONS on C{sock}; the status of the answer, None if none came."""
    try:
        sock.sendall(hostile.sip_request("OPTIONS", port, transport="TCP"))
    except OSError:
        return None
    received = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in received and time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, OSError):
            break
        if not chunk:
            break
        received += chunk
    return hostile.status_of(received)


def refusals_logged(daemon) -> int:
    return daemon.log_text().count("refusing SIP TCP connections")


def closed_at_once(sock: socket.socket) -> bool:
    """The daemon closed C{sock} well before any deadline or timeout could have."""
    from sipxcc.sip.transport import MESSAGE_DEADLINE
    return hostile.closed_within(sock, MESSAGE_DEADLINE / 2) is not None


def test_connections_beyond_the_per_host_cap_are_closed_at_once_others_are_served(daemon):
    port = daemon.sip_port
    held = []
    try:
        for _ in range(PER_HOST):
            held.append(connect(daemon, "127.0.0.2"))
            assert options(held[-1], port) == 200
        for _ in range(3):
            with connect(daemon, "127.0.0.2") as extra:
                assert closed_at_once(extra)
        # another address, and the proxy beyond the per-host cap, are still served
        with connect(daemon, "127.0.0.3") as other:
            assert options(other, port) == 200
        for _ in range(PER_HOST + 4):
            held.append(connect(daemon, PROXY))
            assert options(held[-1], port) == 200
        assert daemon.health() == 200
        assert refusals_logged(daemon) == 1  # three refused, logged once
    finally:
        for sock in held:
            sock.close()

    def served_again() -> bool:
        with connect(daemon, "127.0.0.2") as sock:
            return options(sock, port, timeout=1) == 200
    wait_for(served_again, timeout=10)


def test_the_total_cap_keeps_room_for_the_proxy(daemon):
    port = daemon.sip_port
    held = []
    try:
        for n in range(TOTAL - PER_HOST):  # everyone but the proxy: full
            held.append(connect(daemon, f"127.0.0.{10 + n // PER_HOST}"))
            assert options(held[-1], port) == 200
        with connect(daemon, "127.0.0.30") as late:
            assert closed_at_once(late)
        for _ in range(PER_HOST):
            held.append(connect(daemon, PROXY))
            assert options(held[-1], port) == 200
        with connect(daemon, PROXY) as beyond_total:
            assert closed_at_once(beyond_total)
        assert daemon.health() == 200
        # UDP does not count against the TCP caps
        client = hostile.UDPClient(port)
        try:
            assert hostile.status_of(client.request(hostile.sip_request("OPTIONS", port))) \
                == 200
        finally:
            client.close()
    finally:
        for sock in held:
            sock.close()


def test_a_slowloris_head_is_cut_off_at_the_deadline_and_others_are_served(daemon):
    from sipxcc.sip.transport import MESSAGE_DEADLINE
    port = daemon.sip_port
    interval = 0.5
    slow = hostile.sip_request("OPTIONS", port, transport="TCP",
                               extra="X-Slow: " + "a" * int(2 * MESSAGE_DEADLINE / interval))
    with connect(daemon, "127.0.0.2") as sock, connect(daemon, "127.0.0.3") as other:
        assert options(sock, port) == 200  # a first message in time
        sock.setblocking(False)
        sent = 0
        closed = False
        for byte in slow:  # a byte per tick: the idle timeout never fires
            try:
                sock.send(bytes([byte]))
                sent += 1
                closed = sock.recv(1) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed = True
            if closed:
                break
            if sent == int(MESSAGE_DEADLINE / interval / 2):
                assert options(other, port) == 200  # half way: still open, others served
            time.sleep(interval)  # the attacker's pace, not synchronisation
        assert closed, "a head dribbled for twice the deadline was never cut off"
        assert sent * interval >= MESSAGE_DEADLINE / 2  # not cut off early either
        assert options(other, port) == 200
    assert daemon.health() == 200


def test_a_head_over_the_limit_closes_the_connection_and_one_within_it_is_answered(daemon):
    from sipxcc.sip.framing import MAX_HEAD
    port = daemon.sip_port

    def padded(size: int) -> bytes:
        base = hostile.sip_request("OPTIONS", port, transport="TCP", extra="X-Pad: ")
        pad = size - base.index(b"\r\n\r\n")
        return base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * pad)

    with connect(daemon, "127.0.0.2") as sock:
        sock.sendall(padded(MAX_HEAD))
        received = sock.recv(65536)
        assert hostile.status_of(received) == 200
    with connect(daemon, "127.0.0.2") as sock:
        sock.sendall(padded(MAX_HEAD + 1))
        assert closed_at_once(sock)
    with connect(daemon, "127.0.0.2") as sock:  # never finished: closed at the limit
        sock.sendall(padded(MAX_HEAD * 2)[:MAX_HEAD + 100])
        assert closed_at_once(sock)
    assert daemon.health() == 200


def test_a_request_claiming_another_received_and_rport_is_answered_at_its_source(daemon):
    port = daemon.sip_port
    client = hostile.UDPClient(port)
    victim = hostile.UDPClient(port, host="127.0.0.9")
    try:
        lie = f";received=127.0.0.9;rport={victim.port}"
        request = hostile.sip_request("OPTIONS", port).replace(b";rport\r\n",
                                                                lie.encode() + b"\r\n")
        assert lie.encode() in request
        answer = client.request(request)
        assert answer is not None, "no answer at the request's real source"
        assert hostile.status_of(answer) == 200
        via = answer.split(b"\r\n")[1].decode()
        assert f";received=127.0.0.1;rport={client.port}" in via
        # nothing reached the address the Via named; the documentation address as well
        other = hostile.sip_request("OPTIONS", port).replace(
            b";rport\r\n", b";received=203.0.113.9;rport=9\r\n")
        assert hostile.status_of(client.request(other)) == 200
        assert victim.drain(0.5) == []
    finally:
        client.close()
        victim.close()


def test_a_peer_that_never_reads_its_answers_is_no_longer_read_and_memory_stays_flat(daemon):
    port = daemon.sip_port
    pid = daemon.process.pid
    baseline = hostile.rss_kib(pid)
    batch = hostile.sip_request("OPTIONS", port, transport="TCP") * 100
    sent = 0
    with connect(daemon, "127.0.0.2") as greedy:
        greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        greedy.settimeout(2)
        try:
            while sent < 60_000:  # 27 MB of answers, were they all kept for it
                greedy.sendall(batch)
                sent += 100
        except TimeoutError:
            pass
        assert sent < 60_000, "the daemon kept reading requests whose answers nobody took"
        with connect(daemon, "127.0.0.3") as other:
            assert options(other, port) == 200
        assert daemon.health() == 200
        grown = hostile.rss_kib(pid) - baseline
        assert grown < 10_000, f"RSS grew by {grown} KiB"


def test_a_click_to_call_over_tcp_works_while_others_have_filled_their_share(setup):
    from tests.integration.e2e import curl
    s = setup(transport="tcp", sip_max_connections=12, sip_max_connections_per_host=4)
    port = s.daemon.sip_port
    held = []
    try:
        for n in range(8):  # everyone but the proxy (Kamailio on 127.0.0.1): 12 - 4
            held.append(connect(s.daemon, f"127.0.0.{2 + n // 4}"))
            assert options(held[-1], port) == 200
        with connect(s.daemon, "127.0.0.9") as late:
            assert closed_at_once(late)
        phone = s.phone("user1", "refer_transferee")
        code, _ = curl("-X", "POST", s.url("/callcontroller/user1/user2"))
        assert code == 200
        assert phone.wait(20) == 0, phone.errors()
    finally:
        for sock in held:
            sock.close()


def test_tls_beyond_the_cap_is_closed_before_a_handshake_and_half_open_tls_is_closed(tmp_path):
    from sipxcc.sip.transport import ABORT_GRACE, MESSAGE_DEADLINE
    from tests.integration.daemon import free_ports
    sip_port, = free_ports(1, span=2)  # TLS listens on sip.port + 1
    config = write_config(tmp_path, sip_port=sip_port, sip_transports="udp tcp tls",
                          sip_max_connections_per_host=2)
    with Daemon(config) as daemon:
        tls_port = sip_port + 1
        held = []
        try:
            for _ in range(2):
                raw = socket.create_connection(("127.0.0.1", tls_port), timeout=5,
                                               source_address=("127.0.0.2", 0))
                held.append(hostile.tls_context().wrap_socket(raw))
                assert options(held[-1], tls_port) == 200
            with socket.create_connection(("127.0.0.1", tls_port), timeout=5,
                                          source_address=("127.0.0.2", 0)) as extra:
                assert closed_at_once(extra)
            silent = socket.create_connection(("127.0.0.1", tls_port), timeout=5,
                                              source_address=("127.0.0.3", 0))
            partial = socket.create_connection(("127.0.0.1", tls_port), timeout=5,
                                               source_address=("127.0.0.4", 0))
            partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello
            held += [silent, partial]
            for sock in (silent, partial):
                took = hostile.closed_within(sock, MESSAGE_DEADLINE + ABORT_GRACE + 5)
                assert took is not None, "the daemon kept a half-open TLS connection"
            assert daemon.health() == 200
        finally:
            for sock in held:
                sock.close()
