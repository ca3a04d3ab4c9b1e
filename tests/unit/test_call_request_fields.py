"""A POST's validated parameters become the call's request field for field."""

from __future__ import annotations

from dataclasses import fields

from sipxcc.calls.call import DIRECTORY_FIELDS, CallRequest
from sipxcc.users import User
from sipxcc.web import params
from sipxcc.web.params import Query

AGENT = User("user3@sipx.test", "user3", (), None, None, None)
CALLED = User("user2@sipx.test", "user2", ("202",), "User Two", None, None)


def test_every_request_field_comes_from_the_parameters_of_the_same_name():
    query = Query({b"agent": [b"user3"], b"sipMethod": [b"invite"], b"timeout": [b"30"],
                   b"resultCacheTime": [b"7"], b"subject": [b"Hi"], b"confpin": [b"12#"],
                   b"isForwardingAllowed": [b"true"], b"autoAnswer": [b"true"],
                   b"statusCallback": [b"https://hooks.example/cb"]})
    wanted = params.parse_call_parameters(query, "user1", "user2", domain="sipx.test",
                                          default_timeout=180, default_cache_time=180,
                                          callback_hosts=("hooks.example",))
    request = CallRequest.wanted_by(AGENT, wanted, CALLED)
    assert request == CallRequest(AGENT, "user1@sipx.test", "user2@sipx.test", "INVITE", 30, 7,
                                  "Hi", True, "12#", True, "https://hooks.example/cb",
                                  called_user=CALLED)
    parameter_names = {f.name for f in fields(params.CallParameters)}
    # the rest come from the user directory: the agent (by the name the query gives) and
    # the called user's entry
    assert {f.name for f in fields(CallRequest)} - set(DIRECTORY_FIELDS) <= parameter_names
