"""The real daemon stops cleanly however many stop signals it gets."""

from __future__ import annotations

import os
import signal

import pytest

from tests.integration.daemon import PROJECT_ROOT, STOP_TIMEOUT, TWISTD, Daemon, write_config

DEBIAN_TWISTD = "/usr/bin/twistd3"
DEBIAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(PROJECT_ROOT),
              "HOME": os.environ.get("HOME", "/root")}


@pytest.mark.parametrize("twistd, env", [
    pytest.param(TWISTD, None, id="venv-twisted"),
    pytest.param([DEBIAN_TWISTD], DEBIAN_ENV, id="debian-twistd3",
                 marks=pytest.mark.skipif(not os.path.exists(DEBIAN_TWISTD),
                                          reason="Debian's python3-twisted is not installed")),
])
def test_sigterm_then_sigint_stops_cleanly_without_a_critical_line(tmp_path, twistd, env):
    daemon = Daemon(write_config(tmp_path), twistd=twistd, env=env)
    daemon.start()
    try:
        daemon.process.send_signal(signal.SIGTERM)
        daemon.process.send_signal(signal.SIGINT)
        status = daemon.process.wait(STOP_TIMEOUT)
    finally:
        daemon.stop()
    log = daemon.log_text() + daemon.output_text()
    # Python runs pending handlers in signal-number order: SIGINT's may come first
    assert log.count(", shutting down.") == 1, log
    assert "Main loop terminated." in log
    assert "critical" not in log, log
    assert "ReactorNotRunning" not in log, log
    # twistd ends by re-raising the signal that stopped it
    assert status in (-signal.SIGTERM, -signal.SIGINT), log
