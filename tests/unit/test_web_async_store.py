"""
The REST resources over a call store whose answers come later (as Redis' do) and whose
calls are their stored form (sipxcc.calls.redis_store.StoredCall): the same bytes as over
the memory store, answers written once the store answers (not at all to a client that
left), and the shared registry's failures answered as their HTTP status.
"""

from __future__ import annotations

import json

import pytest
from lxml import etree
from twisted.internet import defer
from twisted.web.resource import getChildForRequest

from sipxcc.calls.call import DialogInfo
from sipxcc.calls.errors import OwnerTimeout, OwnerUnavailable, RegistryUnavailable
from sipxcc.calls.store import MemoryCallStore
from sipxcc.web import render
from sipxcc.web.callcontroller import WebContext, install
from sipxcc.web.errors import PathResource
from tests.unit.webfakes import SEED_EVENTS, WebHarness, WebRequest, basic, stored_form

TRUSTED = "127.0.0.1"
URI = "/callcontroller/user1/user2"
NS = "{http://www.sipfoundry.org/sipX/schema/xml/call-status-00-00}"
JSON = {b"Accept": b"application/json"}
DIALOGS = [DialogInfo("a84b4c76e66710@192.0.2.4:1928301774:314159", "sip:user1@sipx.test",
                      "sip:callcontroller@sipx.test", "Confirmed Dialog"),
           DialogInfo("b7c9@192.0.2.4:887766:<&>\"'", "sip:user2@sipx.test",
                      "sip:user1@sipx.test", "Early Dialog")]


class StoredStore(MemoryCallStore):
    """The memory store's calls in their stored form, each answer held back until
    L{release} (C{held}: False answers at once), or failing with C{error}."""

    def __init__(self, registry):
        super().__init__(registry)
        self.held = True
        self.waiting: list[tuple[defer.Deferred, object]] = []
        self.error: Exception | None = None

    def _later(self, answer):
        """C{answer()} (a Deferred), or the error, once released."""
        result = defer.fail(self.error) if self.error is not None else answer()
        if not self.held:
            return result
        d = defer.Deferred()
        self.waiting.append((d, result))
        return d

    def release(self):
        waiting, self.waiting = self.waiting, []
        for d, result in waiting:
            result.chainDeferred(d)

    def place(self, request):
        return self._later(lambda: super(StoredStore, self).place(request))

    def lookup(self, key):
        return self._later(lambda: super(StoredStore, self).lookup(key).addCallback(
            _stored_or_none))

    def get(self, call_id):
        return self._later(lambda: super(StoredStore, self).get(call_id).addCallback(
            _stored_or_none))

    def calls_of(self, owner, limit):
        return self._later(lambda: super(StoredStore, self).calls_of(owner, limit).addCallback(
            lambda calls: [stored_form(call) for call in calls]))

    def hangup(self, call_id):
        return self._later(lambda: super(StoredStore, self).hangup(call_id))

    def transfer(self, call_id, target, timeout=None):
        return self._later(lambda: super(StoredStore, self).transfer(call_id, target, timeout))


def _stored_or_none(call):
    return None if call is None else stored_form(call)


class Harness(WebHarness):
    """Two resource trees over the same calls: the memory store's, and the stored one."""

    def __init__(self):
        super().__init__()
        self.stored = StoredStore(self.registry)
        self.stored_root = PathResource()
        install(self.stored_root, WebContext(self.config, self.directory, self.stored,
                                             self.auth))

    def send(self, method, uri, **options):
        """Render on the stored tree; the request may still wait for the store."""
        request = WebRequest(method, uri.encode(), **options)
        request.prepath = []
        request.render(getChildForRequest(self.stored_root, request))
        return request

    def both(self, method, uri, **options):
        """The answers of the memory tree and of the stored one (released at once)."""
        memory = self.request(method, uri, **options)
        stored = self.send(method, uri, **options)
        self.stored.release()
        assert stored.finished
        return memory, stored


@pytest.fixture
def web():
    harness = Harness()
    harness.request(b"POST", URI, headers=basic("user1"))
    call = harness.registry.calls[0]
    for event in SEED_EVENTS:
        call.record(event.timestamp, event.call_id, event.method, event.status_line)
    call.set_state("ringing")
    harness.request(b"POST", "/callcontroller/user1/user3?sipMethod=INVITE",
                    headers=basic("user1"))
    harness.registry.calls[1].set_dialog_source(lambda: list(DIALOGS))
    return harness


def test_a_call_and_its_stored_form_render_to_the_same_bytes(web):
    for call in web.registry.calls:
        stored = stored_form(call)
        for as_json in (False, True):
            assert render.call_document(stored, as_json, render.StatusCache()) == (
                render.call_document(call, as_json, render.StatusCache()))
        assert render.call_json(stored) == render.call_json(call)
    stored_calls = [stored_form(call) for call in web.registry.calls]
    assert render.calls_xml(stored_calls) == render.calls_xml(web.registry.calls)
    assert render.calls_json(stored_calls) == render.calls_json(web.registry.calls)


@pytest.mark.parametrize("uri, headers", [
    (URI, {}), (URI, JSON), ("/callcontroller/user1/user3?sipMethod=INVITE", {}),
    ("/callcontroller/user1/user3?sipMethod=INVITE", JSON), ("/calls", {}),
    ("/calls", JSON), ("/callcontroller/user1/user4", {}),
])
def test_get_answers_the_same_bytes_from_either_store(web, uri, headers):
    memory, stored = web.both(b"GET", uri, headers={**basic("user1"), **headers})
    assert memory.responseCode == stored.responseCode == 200
    assert stored.body == memory.body
    assert stored.header(b"content-type") == memory.header(b"content-type")


def test_get_by_id_answers_the_same_bytes_from_either_store(web):
    for call in web.registry.calls:
        for headers in ({}, JSON):
            memory, stored = web.both(b"GET", f"/calls/{call.id}", client=TRUSTED,
                                      headers=headers)
            assert (memory.responseCode, stored.body) == (200, memory.body)


def test_the_answer_waits_for_the_store_and_is_then_written(web):
    request = web.send(b"GET", URI, headers=basic("user1"))
    assert not request.finished and request.written == []
    web.stored.release()
    assert request.finished and request.responseCode == 200
    assert [e.text for e in etree.fromstring(request.body).iter(NS + "status-line")] == [
        e.status_line for e in SEED_EVENTS]


def test_a_trusted_peer_also_waits_for_the_store(web):
    placed = web.send(b"POST", "/callcontroller/user2/user4", client=TRUSTED)
    assert not placed.finished and len(web.registry.calls) == 3
    web.stored.release()
    assert placed.responseCode == 200
    assert placed.header(b"location") == f"/calls/{web.registry.calls[2].id}".encode()


def test_a_client_that_left_before_the_store_answered_gets_nothing(web):
    request = web.send(b"DELETE", URI, headers=basic("user1"))
    request.processingFailed(Exception("connection lost"))  # notifyFinish errs, as on a loss
    written = list(request.written)
    web.stored.release()  # the lookup answers: DELETE asks to hang up, and is answered
    web.stored.release()
    assert request.written == written
    assert web.registry.hung_up == [web.registry.calls[0]]


def test_delete_and_transfer_wait_for_the_owner(web):
    deleted = web.send(b"DELETE", f"/calls/{web.registry.calls[0].id}", client=TRUSTED)
    web.stored.release()  # found
    assert not deleted.finished and web.registry.hung_up == [web.registry.calls[0]]
    web.stored.release()  # the owner hung up
    assert deleted.finished and deleted.responseCode == 200
    web.stored.held = False
    moved = web.send(b"POST", "/callcontroller/user1/user3?action=transfer&target=user4",
                     client=TRUSTED)
    assert moved.responseCode == 200
    assert web.registry.transfers == [(web.registry.calls[1], "user4@sipx.test", 180)]


def status(request):
    root = etree.fromstring(request.body)
    assert root.tag == NS + "processing-status"
    return request.responseCode, int(root[1].text), root[2].text


@pytest.mark.parametrize("method, uri", [
    (b"POST", "/callcontroller/user1/user4"), (b"GET", URI), (b"DELETE", URI),
    (b"GET", "/calls"), (b"POST", "/callcontroller/user1/user3?action=transfer&target=u4"),
])
def test_an_unreachable_registry_is_503_with_retry_after(web, method, uri):
    web.stored.held = False
    web.stored.error = RegistryUnavailable("Redis is not connected")
    request = web.send(method, uri, headers=basic("user1"))
    assert status(request) == (503, 503, "The call registry is unavailable; try again later")
    assert request.header(b"retry-after") == b"5"
    assert len(web.registry.calls) == 2  # nothing placed
    as_json = web.send(method, uri, client=TRUSTED, headers=JSON)
    assert json.loads(as_json.body)["error-code"] == 503


@pytest.mark.parametrize("error, code", [
    (OwnerTimeout("The node that owns the call did not answer in time"), 504),
    (OwnerUnavailable("The node that owns the call is not running"), 410),
])
def test_a_call_whose_owner_does_not_answer(web, error, code):
    web.stored.held = False
    call_id = web.registry.calls[0].id
    web.stored.hangup = lambda call_id: defer.fail(error)
    web.stored.transfer = lambda call_id, target, timeout=None: defer.fail(error)
    for method, uri in ((b"DELETE", URI), (b"DELETE", f"/calls/{call_id}"),
                        (b"POST", "/callcontroller/user1/user3?action=transfer&target=u4")):
        request = web.send(method, uri, headers=basic("user1"))
        assert status(request) == (code, code, str(error))
        assert request.header(b"retry-after") is None


def test_a_call_forgotten_between_its_lookup_and_the_hangup_or_transfer_is_404(web):
    # the owner answers that it no longer knows the call (it ended and was released)
    web.stored.held = False
    call_id = web.registry.calls[0].id
    web.stored.hangup = lambda call_id: defer.succeed(False)
    web.stored.transfer = lambda call_id, target, timeout=None: defer.succeed(False)
    for method, uri in ((b"DELETE", URI), (b"DELETE", f"/calls/{call_id}"),
                        (b"POST", "/callcontroller/user1/user3?action=transfer&target=u4")):
        request = web.send(method, uri, headers=basic("user1"))
        assert status(request) == (404, 404, "Call not found.")
        assert request.header(b"location") is None
