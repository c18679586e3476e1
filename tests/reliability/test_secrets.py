"""The key stays secret, and the transport stays safe.

A planted key never appears in any repr, str, log line (DEBUG included), exception (even when the
provider echoes it back), metrics export; TLS verification is on by default, and a redirect is
never followed, so the key never reaches another host. (Cassettes and the adapters' to_dict and
pickle are checked by their own suites.)
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import shutil
import socket
import ssl
import subprocess
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from embedguard import (
    AuthenticationError,
    EmbeddingClient,
    EmbedGuardError,
    ProviderConnectionError,
    ProviderError,
    profiles,
)
from embedguard.core.export.prometheus import render_prometheus
from embedguard.core.providers import make_codec
from embedguard.testing import EmbeddingServer, Fault

from .conftest import KEY, fast_profile, make_client

ECHO_401 = {"error": {"message": f"Incorrect API key provided: {KEY}. You can find your API key "
                      "at https://platform.openai.com/account/api-keys.",
                      "type": "invalid_request_error", "code": "invalid_api_key"}}  # fmt: skip


def _everything_about(error: BaseException) -> str:
    """Every way an error is commonly rendered or shipped: str, repr, traceback, attrs, pickle."""
    return "\n".join(
        [
            str(error),
            repr(error),
            "".join(traceback.format_exception(error)),
            repr(vars(error)),
            pickle.dumps(error).decode("latin-1"),
        ]
    )


def test_key_never_leaks_from_a_client_that_fails_and_recovers(
    server: EmbeddingServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Through faults, a 401 echoing it and recovery, the key appears in no output at all."""
    caplog.set_level(logging.DEBUG)  # every logger: embedguard, httpx, httpcore
    client = make_client(server, breaker={"failure_threshold": 4})
    texts: list[str] = []
    server.script(Fault.status(500), Fault.rate_limited(0.01), Fault.drop(), Fault.malformed())
    with pytest.raises(EmbedGuardError) as malformed:
        client.embed(["one", "two"])  # three retried faults, then a malformed 200
    client.reset_circuit_breaker()
    server.script(Fault.status(401, body=ECHO_401))
    with pytest.raises(AuthenticationError) as echoed:
        client.embed(["three"])
    server.set_down(True)
    with pytest.raises(EmbedGuardError) as down:
        client.embed(["four"])  # opens the breaker
    with pytest.raises(EmbedGuardError) as rejected:
        client.embed(["four"])
    server.set_down(False)
    client.reset_circuit_breaker()

    async def async_part() -> EmbedGuardError:
        server.script(Fault.status(401, body=ECHO_401))
        try:
            await client.aembed(["five"])
        except EmbedGuardError as error:
            return error
        finally:
            await client.aclose()
        raise AssertionError("the 401 was not raised")

    async_error = asyncio.run(async_part())
    snap = client.metrics()
    codec = make_codec(client.profile, api_key=KEY, environ={})
    texts += [repr(client), str(client), repr(client.profile), str(client.profile),
              repr(client.profile.to_dict()), client.profile.to_toml(),
              repr(client.profile.to_env()), repr(codec), str(codec),
              repr(client._breaker), repr(snap), snap.format(), snap.to_json(),
              render_prometheus(client), caplog.text]  # fmt: skip
    texts += [repr(r.__dict__) for r in caplog.records]
    for error in (malformed.value, echoed.value, down.value, rejected.value, async_error):
        texts.append(_everything_about(error))
    for text in texts:
        assert KEY not in text
    assert "Incorrect API key provided" in str(echoed.value)  # the message itself is kept
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def _probe_401(preamble: int, headers: dict[str, str] | None = None) -> ProviderError:
    """A 401 whose non-JSON body echoes the key after ``preamble`` characters."""
    codec = make_codec(profiles.openai(), api_key=KEY, environ={})
    body = f"<html><body><p>{'x' * preamble} Incorrect API key provided: {KEY}</p></body></html>"
    with pytest.raises(ProviderError) as info:
        codec.parse_response(401, headers or {}, body.encode(), n_inputs=1, dimensions=None)
    return info.value


@pytest.mark.parametrize("preamble", [0, 50, 100])
def test_key_echoed_in_a_short_html_error_page_is_redacted(preamble: int) -> None:
    """A key echoed whole in an HTML error page is redacted from every rendering of the error."""
    text = _everything_about(_probe_401(preamble))
    pieces = {KEY[i : i + 12] for i in range(len(KEY) - 11)}
    assert not [p for p in pieces if p in text]


def test_key_straddling_the_error_excerpt_cut_is_not_leaked() -> None:
    """A key echoed where the error excerpt is cut leaks no part of it."""
    error = _probe_401(130)  # the cut falls 41 characters into the key
    assert KEY[:30] not in _everything_about(error)


def test_key_echoed_in_a_response_header_is_not_leaked() -> None:
    """A key echoed in a response header (request id) does not reach the error."""
    error = _probe_401(0, {"x-request-id": KEY})
    assert KEY not in _everything_about(error)


# -- transport ------------------------------------------------------------------------------------
def _reachable(root: object) -> Iterator[object]:
    """Every object reachable from ``root`` through attributes, slots and containers."""
    seen: set[int] = set()
    stack: list[tuple[object, int]] = [(root, 0)]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen or depth > 10:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, httpx.Client | httpx.AsyncClient):
            continue  # the pools are what we look for, not their insides
        children: list[Any] = []
        if isinstance(obj, dict):
            children = [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            children = list(obj)
        elif hasattr(obj, "__dict__") or hasattr(type(obj), "__slots__"):
            names = list(getattr(obj, "__dict__", {}))
            names += [n for c in type(obj).__mro__ for n in getattr(c, "__slots__", ())]
            children = [getattr(obj, n, None) for n in names]
        stack.extend((c, depth + 1) for c in children if c is not None)


def _httpx_clients(root: object) -> list[httpx.Client | httpx.AsyncClient]:
    return [o for o in _reachable(root) if isinstance(o, httpx.Client | httpx.AsyncClient)]


def _ssl_contexts(http: httpx.Client | httpx.AsyncClient) -> list[ssl.SSLContext]:
    transports = [http._transport, *http._mounts.values()]
    contexts = []
    for transport in transports:
        context = getattr(getattr(transport, "_pool", None), "_ssl_context", None)
        if isinstance(context, ssl.SSLContext):
            contexts.append(context)
    return contexts


def test_tls_verification_is_on_by_default() -> None:
    """Every HTTP pool the client creates, sync and async, verifies certificates and hosts."""
    client = EmbeddingClient(profiles.openai(), api_key=KEY, environ={})

    async def async_pools() -> list[httpx.Client | httpx.AsyncClient]:
        for engine in _engines(client):  # the async pool is made on first use in a loop
            await engine._loop_http()
        return _httpx_clients(client)

    pools = asyncio.run(async_pools())
    client.close()
    assert any(isinstance(p, httpx.Client) for p in pools)
    assert any(isinstance(p, httpx.AsyncClient) for p in pools)
    contexts = [c for p in pools for c in _ssl_contexts(p)]
    assert contexts and len(contexts) >= 2
    for context in contexts:
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is True


def _engines(client: EmbeddingClient) -> list[Any]:
    """The objects that make a client's async pools (one per provider route)."""
    return [o for o in _reachable(client) if callable(getattr(type(o), "_loop_http", None))]


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (made with the openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


class _TlsSink:
    """A TLS listener that records every application byte a client sends it."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.handshakes = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            raw, _ = self.sock.accept()
        except OSError:
            return
        with raw:
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    self.handshakes += 1
                    tls.settimeout(2)
                    self.received = tls.recv(65536)
                    tls.sendall(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
            except (ssl.SSLError, OSError):
                return

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.mark.parametrize("verify", [True, False], ids=["default", "user-disabled-control"])
def test_untrusted_certificate_is_refused_before_the_key_is_sent(
    self_signed: tuple[Path, Path], verify: bool
) -> None:
    """A self-signed HTTPS endpoint is refused before any byte of the request is sent."""
    sink = _TlsSink(*self_signed)
    profile = profiles.openai(
        base_url=f"https://127.0.0.1:{sink.port}/v1", retry={"max_retries": 0}, timeouts=5.0
    )
    http = None if verify else httpx.Client(verify=False)
    client = EmbeddingClient(profile, api_key=KEY, environ={}, http_client=http)
    with pytest.raises(ProviderError) as info:
        client.embed(["secret text"])
    client.close()
    sink.close()
    if http is not None:
        http.close()
    if verify:
        assert isinstance(info.value, ProviderConnectionError)
        assert sink.received == b""
    else:
        assert KEY.encode() in sink.received  # the harness can see a leak when there is one
    assert KEY not in _everything_about(info.value)


@pytest.fixture
def other_host() -> Iterator[EmbeddingServer]:
    """A second server, standing for the host a redirect points to."""
    with EmbeddingServer(dimensions=32) as srv:
        yield srv


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_redirect_is_never_followed_and_the_key_stays_home(
    server: EmbeddingServer, other_host: EmbeddingServer, status: int, mode: str
) -> None:
    """A redirect fails the call with a typed error; the other host sees no request at all."""
    location = f"{other_host.url}/v1/embeddings"
    server.script(Fault.status(status, headers={"location": location}))
    client = EmbeddingClient(fast_profile(server), api_key=KEY, environ={})

    async def call_async() -> None:
        async with client:
            await client.aembed(["redirected"])

    def call_sync() -> None:
        with client:
            client.embed(["redirected"])

    with pytest.raises(ProviderError) as info:
        asyncio.run(call_async()) if mode == "async" else call_sync()
    assert info.value.status_code == status
    assert info.value.failed_indices == (0,)
    assert other_host.requests == []
    assert len(server.requests) == 1  # not retried either: a redirect is not transient
    assert KEY not in _everything_about(info.value)
