"""daemon.log_level: "warn" keeps the per-request and per-call chatter out of the log."""

from __future__ import annotations

import pytest

from tests.integration.daemon import Daemon, write_config


@pytest.mark.parametrize("level,chatty", [("info", True), ("warn", False)])
def test_log_level_filters_info_events(tmp_path, level, chatty):
    with Daemon(write_config(tmp_path, daemon_log_level=level)) as daemon:
        assert daemon.get("/callcontroller/user1/user2")[0] == 200
        assert daemon.health() == 200
    log = daemon.log_text()
    assert ('"GET /callcontroller/user1/user2 HTTP/1.1" 200' in log) is chatty
    assert "Traceback" not in log
