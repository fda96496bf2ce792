"""Text hygiene at the edge: no NUL, no lone surrogate, no invalid UTF-8 gets in.

One ASGI middleware checks every request before any route runs: the query string, the
path, and the body when it is JSON or an URL-encoded form, keys and values alike. Text
with a NUL character or a lone surrogate (which no UTF-8 text can hold, and which the
tokenizer, the database or the logs then choke on; the rule is `kb.text.hygiene`) is
refused, never replaced:

* JSON API (`/v1/...`): 422 `{"error": "validation_error", "detail": [{"loc", "msg",
  "type": "invalid_text"}]}`, the body FastAPI gives for any invalid field; a body that is
  not valid UTF-8 (e.g. the bytes ED A0 80) is 400 `invalid_json`;
* pages: 400 in plain text.

Everything else in Unicode (right-to-left marks, emoji, other control characters, unpaired
combining marks) passes: the features' own rules judge it.
"""

from __future__ import annotations

import json
from urllib.parse import unquote_to_bytes

from api.web.limits import ASGIApp, Message, Receive, Scope, Send, send_json
from kb.text.hygiene import bad_text, text_problem

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NUL = "\x00"


def _form_problems(raw: bytes, where: str) -> list[tuple[list[str | int], str]]:
    problems: list[tuple[list[str | int], str]] = []
    for pair in raw.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        for part in (name, value):
            data = unquote_to_bytes(part.replace(b"+", b" "))
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                label = name.decode("latin-1")[:60]
                problems.append(([where, label], "is not valid UTF-8"))
                break
            problem = text_problem(text)
            if problem:
                label = unquote_to_bytes(name).decode("utf-8", "replace")[:60]
                problems.append(([where, label.replace(_NUL, "\\x00")], problem))
                break
    return problems


def json_body_problems(body: bytes) -> list[tuple[list[str | int], str]] | None:
    """Bad text in a JSON body, by location; None when the body is not UTF-8 at all.

    A body that is not JSON yields no problem here (the app answers it as invalid JSON)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\\u" not in text and _NUL not in text:
        return []  # no escape can make a NUL or a surrogate: nothing to parse
    try:
        data = json.loads(text)
    except ValueError:
        return []
    return list(bad_text(data, ["body"]))


def _content_type(scope: Scope) -> str:
    for key, value in scope.get("headers") or ():
        if key == b"content-type":
            return str(value.decode("latin-1")).split(";")[0].strip().lower()
    return ""


class TextHygieneMiddleware:
    """Refuse requests whose query, path, JSON or form text holds NUL or lone surrogates."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def _refuse(
        self, scope: Scope, send: Send, problems: list[tuple[list[str | int], str]]
    ) -> None:
        if str(scope.get("path", "")).startswith("/v1"):
            detail = [
                {"loc": loc, "msg": f"Text {msg}", "type": "invalid_text"} for loc, msg in problems
            ]
            await send_json(send, 422, {"error": "validation_error", "detail": detail}, {})
            return
        loc, msg = problems[0]
        payload = f"400 Bad Request: {'.'.join(map(str, loc))}: text {msg}".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problems = _form_problems(scope.get("query_string") or b"", "query")
        path = str(scope.get("path", ""))
        if text_problem(path):
            problems.append((["path"], text_problem(path) or ""))
        if problems:
            await self._refuse(scope, send, problems)
            return
        kind = _content_type(scope)
        checks_body = kind == "application/x-www-form-urlencoded" or (
            kind == "application/json" or kind.endswith("+json")
        )
        if scope.get("method") not in _BODY_METHODS or not checks_body:
            await self.app(scope, receive, send)
            return
        # Read the whole body (the body-size limit outside this middleware bounds it), check
        # it, then hand the app the same bytes.
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if kind == "application/x-www-form-urlencoded":
            found: list[tuple[list[str | int], str]] | None = _form_problems(body, "body")
        else:
            found = json_body_problems(body)
        if found is None:
            await send_json(
                send,
                400,
                {"error": "invalid_json", "detail": "the request body is not valid UTF-8"},
                {},
            )
            return
        if found:
            await self._refuse(scope, send, found)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
