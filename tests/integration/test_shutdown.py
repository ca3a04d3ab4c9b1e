"""The real daemon stops cleanly however many stop signals it gets."""

from __future__ import annotations

import signal

from tests.integration.daemon import STOP_TIMEOUT, Daemon, write_config


def test_sigterm_then_sigint_stops_cleanly_without_a_critical_line(tmp_path):
    daemon = Daemon(write_config(tmp_path))
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
