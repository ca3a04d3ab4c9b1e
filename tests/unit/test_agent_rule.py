"""Who may place a call for whom: the agent must be the authenticated user, and acting for
another calling user needs a listing in users.agents (user3 in the fakes)."""

from __future__ import annotations

from lxml import etree

from tests.unit.webfakes import WebHarness, basic


def error(request) -> tuple[int, str, int, str]:
    root = etree.fromstring(request.body)
    return request.responseCode, root[0].text, int(root[1].text), root[2].text


def test_unlisted_user_naming_themselves_agent_may_not_call_for_another():
    # user1 passes the first rule (user1 is the agent) and must be stopped by the second.
    harness = WebHarness()
    request = harness.request(b"POST", "/callcontroller/user2/user4?agent=user1",
                              headers=basic("user1"))
    assert error(request) == (403, "ERROR", 403, "user1 may not place calls for user2")
    assert harness.registry.calls == []


def test_unlisted_user_naming_themselves_agent_may_not_look_at_another_s_call():
    harness = WebHarness()
    request = harness.request(b"GET", "/callcontroller/user2/user4?agent=user1",
                              headers=basic("user1"))
    assert error(request) == (403, "ERROR", 403, "user1 may not place calls for user2")


def test_the_same_request_from_a_listed_agent_is_placed():
    harness = WebHarness()
    request = harness.request(b"POST", "/callcontroller/user2/user4?agent=user3",
                              headers=basic("user3"))
    assert request.responseCode == 200
    [call] = harness.registry.calls
    assert (call.request.agent.user_name, call.request.calling, call.request.called) == (
        "user3", "user2@sipx.test", "user4@sipx.test")


def test_calling_for_oneself_by_alias_needs_no_agent_rights():
    harness = WebHarness()
    request = harness.request(b"POST", "/callcontroller/201/user4?agent=user1",
                              headers=basic("user1"))
    assert request.responseCode == 200
    assert harness.registry.calls[0].request.calling == "201@sipx.test"
