"""
Why a call ended, as an RFC 3326 Reason header: the SIP cause and, where one exists, the
Q.850 cause a phone or gateway shows or plays (busy tone for 17, and so on).

The Q.850 causes are RFC 3398 §8.2.6.1's mapping of SIP final responses to ISUP causes;
a status it does not map gets the SIP cause alone.
"""

from __future__ import annotations

from sipxcc.sip.uri import quote

#: RFC 3398 §8.2.6.1: SIP final response -> Q.850 cause value
Q850_CAUSES: dict[int, int] = {
    400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102,
    410: 22, 413: 127, 414: 127, 415: 79, 416: 127, 420: 127, 421: 127, 423: 127,
    480: 18, 481: 41, 482: 25, 483: 25, 484: 28, 485: 1, 486: 17, 488: 127,
    500: 41, 501: 79, 502: 38, 503: 41, 504: 102, 505: 127, 513: 127,
    600: 17, 603: 21, 604: 1, 606: 58,
}

#: The called party rang for the whole ring time and nobody answered: SIP has no final
#: response of its own for that (we CANCELled it: 487), so the caller is told 480 with
#: Q.850 cause 19, "no answer from user (user alerted)".
NO_ANSWER = (480, "No Answer", 19)


def ending_reason(status: int, text: str, q850: int | None = None) -> tuple[str, str]:
    """
    The Reason header for a BYE that ends the calling user's leg because the called
    party's call failed with C{status} C{text}: C{SIP;cause=...;text="..."}, followed by
    C{Q.850;cause=...} when there is a Q.850 cause (C{q850}, else L{Q850_CAUSES}).
    C{text} is peer text: it is quoted (RFC 3261 §25.1), and control characters refused
    by the header constructor on the way out.
    """
    value = f"SIP;cause={status};text={quote(text)}"
    cause = q850 if q850 is not None else Q850_CAUSES.get(status)
    if cause is not None:
        value += f", Q.850;cause={cause}"
    return ("Reason", value)
