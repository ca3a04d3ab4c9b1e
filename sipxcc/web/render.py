"""
The status documents of the REST interface, as XML (lxml) or JSON.

Element names and layout follow the original sipXcallController byte for byte where
practical: the prolog, a newline, one element per line, tab-indented children. Every text
is escaped by lxml after characters XML 1.0 cannot carry have been removed.
"""

from __future__ import annotations

import functools
import json
import re
from collections import OrderedDict
from collections.abc import Iterable

from lxml import etree

from sipxcc.calls.call import DialogInfo, StatusEvent
from sipxcc.calls.store import CallView

NAMESPACE = "http://www.sipfoundry.org/sipX/schema/xml/call-status-00-00"
PROLOG = b'<?xml version="1.0" encoding="UTF-8"?>\n'
XML_TYPE = b"text/xml; charset=UTF-8"
JSON_TYPE = b"application/json; charset=utf-8"

# XML 1.0 §2.2 Char, complemented.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean_text(value: object) -> str:
    """C{value} as text XML 1.0 can carry: invalid UTF-8 replaced, control characters dropped."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
    else:
        text = str(value)
        # Lone surrogates (e.g. from surrogateescape decoding) are not encodable.
        text = text.encode("utf-8", "replace").decode("utf-8")
    return _NOT_XML_CHAR.sub("", text)


def _qualified(tag: str) -> str:
    """lxml's name for C{tag} in the status namespace."""
    return f"{{{NAMESPACE}}}{tag}"


def _root(tag: str) -> etree._Element:
    root = etree.Element(_qualified(tag),
                         nsmap={None: NAMESPACE})  # type: ignore[dict-item]  # lxml takes None: the default namespace; lxml-stubs says str
    root.text = "\n"
    return root


def _child(parent: etree._Element, tag: str, text: object, indent: str = "") -> None:
    element = etree.SubElement(parent, _qualified(tag))
    element.text = clean_text(text)
    element.tail = "\n" + indent


def _serialize(root: etree._Element) -> bytes:
    return PROLOG + etree.tostring(root, encoding="UTF-8", xml_declaration=False) + b"\n"


@functools.lru_cache(maxsize=256)  # mostly the same few documents ("Success", ...)
def processing_status_xml(code: int, text: str) -> bytes:
    """C{<processing-status>}: C{OK} for 2xx codes, C{ERROR} otherwise."""
    root = _root("processing-status")
    _child(root, "error-flag", "OK" if 200 <= code < 300 else "ERROR")
    _child(root, "error-code", code)
    _child(root, "error-text", text)
    return _serialize(root)


@functools.lru_cache(maxsize=256)
def processing_status_json(code: int, text: str) -> bytes:
    return _json({"error-flag": "OK" if 200 <= code < 300 else "ERROR",
                  "error-code": code, "error-text": clean_text(text)})


def status_lines_xml(events: Iterable[StatusEvent]) -> bytes:
    """The REFER-mode C{<status-lines>} document, one C{<status>} per event."""
    root = _root("status-lines")
    for event in events:
        status = etree.SubElement(root, _qualified("status"))
        status.text = "\n\t"
        _child(status, "timestamp", event.timestamp, "\t")
        _child(status, "call-id", event.call_id, "\t")
        _child(status, "method", event.method, "\t")
        _child(status, "status-line", event.status_line)
        status.tail = "\n"
    return _serialize(root)


def dialogs_xml(dialogs: Iterable[DialogInfo]) -> bytes:
    """The INVITE-mode C{<dialogs>} document."""
    root = _root("dialogs")
    for info in dialogs:
        dialog = etree.SubElement(root, _qualified("dialog"))
        root.text = "\n\t"
        dialog.text = "\n\t\t"
        _child(dialog, "dialog-id", info.dialog_id, "\t\t")
        _child(dialog, "local-party", info.local_party, "\t\t")
        _child(dialog, "remote-party", info.remote_party, "\t\t")
        _child(dialog, "dialog-state", info.state, "\t")
        dialog.tail = "\n\t"
    if len(root):
        root[-1].tail = "\n"
    return _serialize(root)


def _event_json(event: StatusEvent) -> dict[str, object]:
    return {"timestamp": event.timestamp, "call-id": clean_text(event.call_id),
            "method": clean_text(event.method), "status-line": clean_text(event.status_line)}


def _dialog_json(info: DialogInfo) -> dict[str, object]:
    return {"dialog-id": clean_text(info.dialog_id),
            "local-party": clean_text(info.local_party),
            "remote-party": clean_text(info.remote_party),
            "dialog-state": clean_text(info.state)}


def status_lines_json(events: Iterable[StatusEvent]) -> bytes:
    return _json({"status-lines": [_event_json(event) for event in events]})


def dialogs_json(dialogs: Iterable[DialogInfo]) -> bytes:
    return _json({"dialogs": [_dialog_json(info) for info in dialogs]})


def call_summary(call: CallView) -> dict[str, object]:
    """What C{/calls} shows of a call; C{reason} only for a call that ended without its
    node ("node lost": another node found it gone; "restart": it was restarted)."""
    summary: dict[str, object] = {
        "id": call.id, "state": call.state, "calling": clean_text(call.calling),
        "called": clean_text(call.called), "mode": call.mode, "created": call.created}
    if call.reason:
        summary["reason"] = call.reason
    return summary


def call_json(call: CallView) -> bytes:
    """C{/calls/{id}} as JSON: the summary plus the status lines, and in INVITE mode the
    dialogs as well (the status lines say why a call ended: a time limit, a refusal)."""
    document = call_summary(call)
    if call.mode == "INVITE":
        document["dialogs"] = [_dialog_json(info) for info in call.dialogs()]
    document["status-lines"] = [_event_json(event) for event in call.events]
    return _json(document)


def calls_json(calls: Iterable[CallView]) -> bytes:
    return _json({"calls": [call_summary(call) for call in calls]})


def calls_xml(calls: Iterable[CallView]) -> bytes:
    """C{<calls>}: one C{<call>} summary per call (new; the original had no list)."""
    root = _root("calls")
    for call in calls:
        element = etree.SubElement(root, _qualified("call"))
        element.text = "\n\t"
        summary = call_summary(call)
        names = list(summary)
        for name in names:
            _child(element, name, summary[name], "\t" if name != names[-1] else "")
        element.tail = "\n"
    return _serialize(root)


def _json(document: dict[str, object]) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


class StatusCache:
    """
    The rendered REFER-mode documents of the calls most recently asked for (a bounded LRU,
    so retained calls cost no more for having been queried). A call's events only ever
    grow, so their count tells whether the cached bytes are current.
    """

    def __init__(self, size: int = 4096):
        self.size = size
        self._cache: OrderedDict[str, tuple[int, dict[bool, bytes]]] = OrderedDict()

    def status_lines(self, call: CallView, as_json: bool) -> bytes:
        count = call.event_count
        entry = self._cache.get(call.id)
        if entry is None or entry[0] != count:
            entry = (count, {})
            self._cache[call.id] = entry
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(call.id)
        body = entry[1].get(as_json)
        if body is None:
            events = call.events[:count]
            body = status_lines_json(events) if as_json else status_lines_xml(events)
            entry[1][as_json] = body
        return body


def call_document(call: CallView, as_json: bool, cache: StatusCache) -> bytes:
    """The document GET returns for a call: status lines (REFER) or dialogs (INVITE)."""
    if call.mode == "INVITE":
        return dialogs_json(call.dialogs()) if as_json else dialogs_xml(call.dialogs())
    return cache.status_lines(call, as_json)


def empty_document(method: str, as_json: bool) -> bytes:
    """What GET returns for an unknown key, exactly as the original."""
    if method == "INVITE":
        return dialogs_json(()) if as_json else dialogs_xml(())
    return status_lines_json(()) if as_json else status_lines_xml(())
