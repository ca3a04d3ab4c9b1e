"""The Site build_site assembles: its event streams run on its clock and end when it stops,
and its access log is written unless the daemon turns it off."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import getChildForRequest

from sipxcc.calls.store import MemoryCallStore
from sipxcc.web.site import build_site
from tests.unit.test_live_events import HubRegistry, StreamRequest
from tests.unit.test_web_limits import GET_HEALTH, Client
from tests.unit.webfakes import FakeDirectory, make_config


def test_the_sites_event_streams_beat_on_its_clock_and_end_when_it_stops():
    clock = Clock()
    site = build_site(make_config(), FakeDirectory(), MemoryCallStore(HubRegistry()), clock)
    request = StreamRequest(b"GET", b"/events", client="127.0.0.1")
    request.prepath = []
    request.render(getChildForRequest(site.resource, request))
    assert request.responseCode == 200
    clock.advance(15)
    assert request.body.endswith(b": keep-alive\n\n")
    site.stopFactory()
    assert request.finished == 1


@pytest.mark.parametrize(("access_log", "lines"), [(None, 1), (False, 0)])
def test_the_site_writes_an_access_log_line_per_request_unless_turned_off(
        tmp_path, access_log, lines):
    path = tmp_path / "access.log"
    reactor = MemoryReactorClock()
    site = build_site(make_config(), FakeDirectory(), MemoryCallStore(HubRegistry()), reactor)
    if access_log is not None:
        site.access_log = access_log
    site.logPath = str(path)
    site.startFactory()
    client = Client(site)
    client.send(GET_HEALTH)
    assert client.output().startswith(b"HTTP/1.1 200 OK\r\n")
    site.stopFactory()
    assert path.read_text().count('"GET /health HTTP/1.1" 200 3 ') == lines
