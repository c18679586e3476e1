"""A minimal HTTP/1.1 server connection on asyncio streams and h11, with byte-level control."""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import h11
import orjson

__all__ = ["App", "HttpReply", "HttpRequest", "Respond", "serve_connection"]

_log = logging.getLogger("embedguard.testing")
_READ_SIZE = 1 << 18
_TRICKLE_STEP = 0.02  # seconds between two pieces of a trickled body


@dataclass(frozen=True)
class HttpRequest:
    """One complete request as received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    raw_path: str = ""  # the path as sent, still percent-encoded (what SigV4 signs)


@dataclass
class HttpReply:
    """A response to send: status, headers, body, and optionally a slow (trickled) body."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    trickle: float = 0.0


Respond = Callable[[HttpReply], Awaitable[None]]
# An app answers through ``respond`` and returns whether it did; False closes the connection
# without a response (a dropped connection).
App = Callable[[HttpRequest, Respond], Awaitable[bool]]


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(_READ_SIZE))  # b"" tells h11 the peer closed


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> HttpRequest | None:
    event = await _next_event(conn, reader)
    if not isinstance(event, h11.Request):
        return None
    chunks: list[bytes] = []
    while True:
        part = await _next_event(conn, reader)
        if isinstance(part, h11.Data):
            chunks.append(part.data)
        elif isinstance(part, h11.EndOfMessage):
            break
        else:
            return None
    headers: dict[str, str] = {}
    for raw_name, raw_value in event.headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    target = urlsplit(event.target.decode("latin-1"))
    return HttpRequest(
        method=event.method.decode("ascii"),
        path=unquote(target.path),
        query=dict(parse_qsl(target.query, keep_blank_values=True)),
        headers=headers,
        body=b"".join(chunks),
        raw_path=target.path,
    )


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class _Responder:
    """Writes one reply through h11, remembering whether anything was sent."""

    def __init__(self, conn: h11.Connection, writer: asyncio.StreamWriter) -> None:
        self.conn, self.writer, self.sent = conn, writer, False

    async def __call__(self, reply: HttpReply) -> None:
        if self.sent:
            raise RuntimeError("a reply was already sent for this request")
        self.sent = True
        conn, writer, body = self.conn, self.writer, reply.body
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        response = h11.Response(
            status_code=reply.status, headers=headers, reason=_reason(reply.status)
        )
        writer.write(conn.send(response) or b"")
        if reply.trickle > 0 and body:
            pieces = max(2, min(len(body), math.ceil(reply.trickle / _TRICKLE_STEP)))
            size = math.ceil(len(body) / pieces)
            chunks = [body[i : i + size] for i in range(0, len(body), size)]
            await writer.drain()
            for chunk in chunks:
                await asyncio.sleep(reply.trickle / len(chunks))
                writer.write(conn.send(h11.Data(data=chunk)) or b"")
                await writer.drain()
        elif body:
            # Passthrough avoids copying large bodies into one joined buffer.
            for piece in conn.send_with_data_passthrough(h11.Data(data=body)) or ():
                writer.write(piece)
        writer.write(conn.send(h11.EndOfMessage()) or b"")


async def _send_internal_error(responder: _Responder, exc: Exception) -> None:
    message = f"internal test server error: {type(exc).__name__}: {exc}"
    error = {"message": message, "type": "server_error", "param": None, "code": None}
    body = orjson.dumps({"error": error})
    await responder(HttpReply(500, body, [("content-type", "application/json")]))


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, app: App
) -> None:
    """Serve keep-alive requests on one connection until it closes or ``app`` drops it."""
    conn = h11.Connection(h11.SERVER)
    cancelled = False
    try:
        while True:
            request = await _read_request(conn, reader)
            if request is None:
                return
            responder = _Responder(conn, writer)
            try:
                answered = await app(request, responder)
            except (ConnectionError, h11.LocalProtocolError):
                return
            except Exception as exc:  # a bug in the app: answer 500 so the test sees it
                _log.exception(
                    "embedding test server failed on %s %s", request.method, request.path
                )
                if not responder.sent:
                    await _send_internal_error(responder, exc)
                return
            if not answered or not responder.sent:
                return
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except asyncio.CancelledError:
        cancelled = True
        raise
    except (ConnectionError, h11.RemoteProtocolError, h11.LocalProtocolError):
        return
    finally:
        if cancelled:
            writer.transport.abort()
        else:
            writer.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await writer.wait_closed()
