"""Domain errors; the API maps each to an HTTP status in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, detail: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class PreconditionFailed(Conflict):
    """The client's version of a resource (`If-Match`) is no longer the current one."""

    code = "precondition_failed"


class InvalidInput(DomainError):
    code = "invalid_input"


class Unprocessable(InvalidInput):
    """Well-formed input that the content rules refuse (an unknown category, publishing a
    draft without an answer): HTTP 422."""

    code = "unprocessable"


class InvalidTransition(DomainError):
    code = "invalid_transition"


class ContentError(DomainError):
    """A content file cannot be loaded; the message names the file."""

    code = "content_error"


class IndexNotReady(DomainError):
    code = "index_not_ready"


class TooLarge(DomainError):
    """A request with more items than allowed (e.g. posts in one batch)."""

    code = "too_large"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class CsrfRejected(Forbidden):
    """A state-changing request without the visitor's anti-forgery token."""

    code = "csrf_failed"


class RateLimited(DomainError):
    """Too many requests from one visitor or address; `retry_after` is in seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, detail: object | None = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class Busy(RateLimited):
    """This replica already runs as many requests of this kind as it allows (the rest of the
    machine is kept for other work); try again after `retry_after` seconds."""

    code = "busy"
