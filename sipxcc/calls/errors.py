"""Errors the call-control layer raises; each knows the HTTP status that reports it."""


class CallError(Exception):
    """A request the registry refused; C{code} is the HTTP status that reports it."""

    code = 500
    retry_after: int | None = None

    def __init__(self, text: str, retry_after: int | None = None):
        super().__init__(text)
        if retry_after is not None:
            self.retry_after = retry_after


class CallInProgress(CallError):
    code = 409


class TooManyCalls(CallError):
    code = 503
    retry_after = 5


class AgentLimit(CallError):
    code = 429
    retry_after = 5


class CallNotFound(CallError):
    code = 404


class TransferNotPossible(CallError):
    code = 409
