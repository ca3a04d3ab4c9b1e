"""Memory stays bounded however many HTTPS connections and calls come and go."""

from __future__ import annotations

import http.client
import ssl

from tests.integration.daemon import Daemon, write_config


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_rss_levels_off_under_a_stream_of_new_https_connections(tmp_path):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with Daemon(write_config(tmp_path, daemon_log_level="warn")) as daemon:
        samples = []
        for _ in range(6):
            for _ in range(250):
                connection = http.client.HTTPSConnection("127.0.0.1", daemon.config.http.https,
                                                         context=context, timeout=5)
                connection.request("GET", "/callcontroller/user1/user2")
                assert connection.getresponse().read()
                connection.close()
            samples.append(rss_kib(daemon.process.pid))
    # after the first batches (caches, arenas) it must stop growing: < 8 MiB for 750 more
    assert samples[-1] - samples[2] < 8 * 1024, samples
