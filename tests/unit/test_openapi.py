"""GET /openapi.json: served to anyone, and describing every path, parameter and header."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.web.resource import getChildForRequest

from sipxcc.web import params
from sipxcc.web.openapi import OpenAPIResource, load_spec
from tests.unit.webfakes import WebRequest

ROOT = Path(__file__).resolve().parents[2]
PARAMETERS = ("agent", "sipMethod", "action", "target", "timeout", "resultCacheTime",
              "subject", "isForwardingAllowed", "confpin", "autoAnswer", "statusCallback",
              "statusCallbackEvent", "timeLimit", "callerId", "callerIdName")


def spec() -> dict:
    return json.loads(load_spec())


def test_it_is_served_without_credentials_as_json():
    from sipxcc.web.errors import PathResource
    root = PathResource()
    root.putChild(b"openapi.json", OpenAPIResource())
    request = WebRequest(b"GET", b"/openapi.json")
    request.prepath = []
    request.render(getChildForRequest(root, request))
    assert request.responseCode in (None, 200)
    assert request.header(b"content-type") == b"application/json; charset=utf-8"
    assert json.loads(request.body)["openapi"] == "3.1.0"


def test_the_docs_copy_is_the_served_file():
    assert (ROOT / "docs" / "openapi.json").read_bytes() == load_spec()


def test_every_path_is_described():
    assert set(spec()["paths"]) == {
        "/callcontroller/{callingUser}/{calledUser}",
        "/sipxconfig/rest/my/redirect/callcontroller/{callingUser}/{calledUser}",
        "/calls", "/calls/{id}", "/calls/{id}/events", "/events", "/health",
        "/openapi.json", "/metrics"}


def test_post_describes_every_parameter_and_header_case_sensitively():
    document = spec()
    for path in ("/callcontroller/{callingUser}/{calledUser}",
                 "/sipxconfig/rest/my/redirect/callcontroller/{callingUser}/{calledUser}"):
        post = document["paths"][path]["post"]
        names = [p["name"] for p in post["parameters"] if "name" in p]
        assert names == list(PARAMETERS)
        assert post["parameters"][0] == {"$ref": "#/components/parameters/IdempotencyKey"}
        headers = post["responses"]["200"]["headers"]
        assert set(headers) == {"Location", "Idempotent-Replayed"}
        assert {"400", "401", "403", "409", "415", "422", "429", "503"} <= set(post["responses"])
    key = document["components"]["parameters"]["IdempotencyKey"]
    assert (key["name"], key["schema"]["maxLength"]) == ("Idempotency-Key", 255)


def test_both_media_types_are_described_for_every_document_answer():
    for path, item in spec()["paths"].items():
        if path in ("/health", "/openapi.json", "/metrics"):
            continue
        if path.endswith("/events"):  # a stream, not a document
            assert set(item["get"]["responses"]["200"]["content"]) == {"text/event-stream"}
            continue
        for method in ("get", "post", "delete"):
            if method in item:
                content = item[method]["responses"]["200"]["content"]
                assert set(content) == {"text/xml", "application/json"}, (path, method)


def test_the_limits_in_the_spec_are_the_codes():
    document = spec()
    post = document["paths"]["/callcontroller/{callingUser}/{calledUser}"]["post"]
    by_name = {p["name"]: p["schema"] for p in post["parameters"] if "name" in p}
    assert by_name["timeout"]["maximum"] == params.MAX_TIMEOUT
    assert by_name["resultCacheTime"]["maximum"] == params.MAX_RESULT_CACHE_TIME
    assert by_name["subject"]["maxLength"] == params.MAX_SUBJECT
    assert by_name["statusCallback"]["maxLength"] == params.MAX_CALLBACK_URL
    limit = document["paths"]["/calls"]["get"]["parameters"][0]["schema"]
    assert limit["maximum"] == params.MAX_LIST_LIMIT
