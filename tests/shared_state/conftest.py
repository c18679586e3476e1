"""Redis back ends for the shared-state tests: fakeredis always, a real ``redis-server`` if found.

The real server is a ``redis-server`` subprocess on a free loopback port (no persistence),
started once per session and killed afterwards. Without the binary, the real-Redis
parametrizations are skipped (install it with ``apt-get install redis-server``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

redis = pytest.importorskip("redis", reason="the redis extra is not installed")
fakeredis = pytest.importorskip("fakeredis", reason="fakeredis is not installed (dev extra)")
pytest.importorskip("lupa", reason="fakeredis runs Lua through lupa: pip install 'fakeredis[lua]'")

from embedguard.core.shared_state import connect  # noqa: E402

REDIS_SERVER = shutil.which("redis-server")
NO_REDIS_SERVER = "redis-server binary not found (apt-get install redis-server to run these)"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A throwaway ``redis-server`` on ``127.0.0.1:port`` without persistence."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        assert REDIS_SERVER is not None
        self._proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self._proc.poll() is not None:
                        self.stop()
                        raise RuntimeError(f"redis-server did not start on {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """One real redis-server for the session."""
    if REDIS_SERVER is None:
        pytest.skip(NO_REDIS_SERVER)
    server = RedisProcess().start()
    yield server
    server.stop()


@dataclass
class Backend:
    """A Redis client for one test, with a key prefix no other test uses."""

    kind: str
    client: redis.Redis
    prefix: str
    make_client: Callable[[], redis.Redis]


@pytest.fixture(params=["fakeredis", "redis-server"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The same test against fakeredis and against a real redis-server."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    clients: list[redis.Redis] = []
    if request.param == "fakeredis":
        fake = fakeredis.FakeServer()

        def make() -> redis.Redis:
            clients.append(fakeredis.FakeRedis(server=fake))
            return clients[-1]
    else:
        server: RedisProcess = request.getfixturevalue("redis_server")

        def make() -> redis.Redis:
            clients.append(connect(server.url))
            return clients[-1]

    yield Backend(request.param, make(), prefix, make)
    for client in clients:
        client.close()


_FIGURES: dict[str, str] = {}


@pytest.fixture(scope="session")
def figures() -> dict[str, str]:
    """Figures a test established, printed at the end of the run."""
    return _FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the fleet figures (achieved rate, probes seen) after the run."""
    if _FIGURES:
        terminalreporter.section("shared state figures")
        for name, text in _FIGURES.items():
            terminalreporter.write_line(f"{name}: {text}")
