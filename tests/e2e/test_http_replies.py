"""What the HTTP transport keeps from a reply, over real HTTP: cookies a provider sets (sent back
on later requests, as httpx does), and header names in any case or repeated."""

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from embedguard import EmbeddingClient, RateLimitError, profiles

from .conftest import KEY, fast

DIM = 8


class _Handler(BaseHTTPRequestHandler):
    """An OpenAI-shaped server: the first reply sets a cookie; every request's Cookie header is
    recorded; ``/limited`` answers with mixed-case and repeated rate-limit headers."""

    seen: list[str | None]
    limited: bool

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(self.headers.get("Cookie"))
        if type(self).limited:
            self.send_response(429)
            self.send_header("Content-Type", "application/json")
            self.send_header("RETRY-AFTER", "0.01")
            self.send_header("X-RateLimit-Limit-Requests", "600")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "slow down", "type": "rate_limit"}}')
            return
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(
                    np.full(DIM, i + 1, dtype=np.float32).tobytes()
                ).decode(),
            }
            for i in range(len(body["input"]))
        ]
        payload = json.dumps(
            {"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 3}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if len(type(self).seen) == 1:
            self.send_header("Set-Cookie", "lb=node-7; Path=/")
        self.send_header("X-RateLimit-Limit-Requests", "5000")
        self.send_header("x-ratelimit-limit-tokens", "2000000")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"seen": [], "limited": False})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def _client(url: str) -> EmbeddingClient:
    return EmbeddingClient(
        fast(profiles.openai(base_url=url, dimensions=DIM)), api_key=KEY, environ={}
    )


def test_a_cookie_the_provider_sets_goes_back_and_headers_are_read_in_any_case(
    server: tuple[str, type[_Handler]],
) -> None:
    url, handler = server
    with _client(url) as client:
        client.embed_query("one")
        client.embed_query("two")
        assert client.rate_limits["requests"] == (5000.0, "server")
        assert client.rate_limits["tokens"] == (2_000_000.0, "server")
    assert handler.seen == [None, "lb=node-7"]


def test_async_requests_keep_cookies_too(server: tuple[str, type[_Handler]]) -> None:
    url, handler = server

    async def main() -> None:
        async with _client(url) as client:
            await client.aembed_query("one")
            await client.aembed_query("two")

    asyncio.run(main())
    assert handler.seen == [None, "lb=node-7"]


def test_a_429s_retry_after_is_read_whatever_its_case(
    server: tuple[str, type[_Handler]],
) -> None:
    url, handler = server
    handler.limited = True
    with _client(url) as client, pytest.raises(RateLimitError) as caught:
        client.embed_query("one")
    assert caught.value.retry_after == pytest.approx(0.01)


def test_replies_are_decoded_one_at_a_time_however_many_arrive_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bulk calls decode one reply at a time in the process (each reply's JSON tree is large and
    decoding holds the GIL anyway), sync and async alike, while the requests still overlap."""
    from embedguard.core.providers._json import JsonCodec
    from embedguard.testing import EmbeddingServer

    inside, most = 0, 0
    lock = threading.Lock()
    decode = JsonCodec.parse_response

    def parse_response(self: JsonCodec, *args: object, **kwargs: object) -> object:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        try:
            threading.Event().wait(0.01)  # releases the GIL: without the lock, others come in
            return decode(self, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(JsonCodec, "parse_response", parse_response)
    texts = [f"text {i}" for i in range(64)]
    with EmbeddingServer(dimensions=DIM, max_concurrency=8, latency=0.02) as srv:
        profile = profiles.openai(base_url=srv.base_url("openai"), dimensions=DIM)
        profile = fast(profile, encoding_format="float", batching={"max_inputs": 4})
        with EmbeddingClient(profile, api_key=KEY, environ={}) as client:
            vectors = client.embed(texts)

            async def both() -> np.ndarray:
                return await client.aembed([f"again {t}" for t in texts])

            again = asyncio.run(both())
        assert srv.max_in_flight > 1  # the requests themselves ran side by side
    assert vectors.shape == again.shape == (64, DIM)
    assert most == 1
