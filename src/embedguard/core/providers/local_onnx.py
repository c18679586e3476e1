"""The ONNX Runtime backend of in-process models (extra ``onnx``).

A sentence-transformers model made of a transformer, mean or CLS pooling and (optionally) a
normalization is exported once, offline, from its local weights: ``torch.onnx.export`` of the
transformer with the pooling and the normalization inside the graph, then ONNX Runtime's
transformer fusions (attention, layer norms, GELU). Before it is used, the export is checked
against the sentence-transformers model on probe texts (a long one, an empty one, accents, CJK):
a cosine below 0.9999 for any of them, and the export is not kept.

``precision="int8"`` (backend ``"onnx-int8"``) also stores the MatMul weights outside the fused
attention as 8-bit blocks (``_onnx_export.quantize``; needs ``onnx-ir``); its bar is 0.999.
Measured on texts of 40 words (``bench/local_backends.md``, 2 shared cores): the fp32 export
gives 1.2-1.9x sentence-transformers' texts/s, the int8 one 1.4-2.1x at a min cosine of 0.9996.
ONNX Runtime's dynamic int8 quantisation is not offered: 2.3-3.5x, but a min cosine of 0.98 (the
bar is 0.99) and vectors that depend on the batch (one activation scale per batch).

The export is cached in ``$XDG_CACHE_HOME/embedguard/onnx`` (default ``~/.cache``), keyed by the
model's location, its files (names, sizes, modification times) and the versions of torch,
transformers, sentence-transformers, onnx and onnxruntime; a later process loads the cached graph
and the model's tokenizer without loading the torch model. A model named (not a directory) is
keyed by its name.

Texts run sorted by token count, in batches padded to their longest text, on an ONNX Runtime
session with one thread per available core and no spin-waiting (on a loaded machine, threads
that spin for work take the cores the other threads need: 30 against 40 texts/s, 2 threads).
One thread was as fast or faster while the 2-core machine ran at a load above 3, two threads
1.5x faster at a load of 2: ``OnnxModel.load(..., threads=1)`` for a busy host.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..._extras import MissingExtraError, require
from ..errors import ConfigurationError
from . import _onnx_export as _export
from ._onnx_export import FORMAT, ExportError

__all__ = ["OnnxModel", "cache_dir", "load_model"]

_log = logging.getLogger("embedguard.local")

_MIN_COSINE = {"fp32": 0.9999, "int8": 0.999}  # the check's bar on the probe texts
_MAX_BATCH_TOKENS = 8192  # padded tokens per forward pass (bounds the attention's memory)
_VERSIONED = ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime")


def cache_dir() -> Path:
    """Where exports are cached: ``$XDG_CACHE_HOME/embedguard/onnx`` (default ``~/.cache``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "embedguard" / "onnx"


def cache_entry(location: str, root: Path | None = None, precision: str = "fp32") -> Path:
    """The cache directory of ``location``'s export (see the module docstring for the key)."""
    digest = hashlib.sha256()
    versions: dict[str, str | None] = {}
    for dist in _VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    digest.update(json.dumps([FORMAT, location, precision, versions]).encode())
    path = Path(location)
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(
                f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
    name = "-".join(path.parts[-2:]) if path.is_dir() else location  # e.g. "package-model"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[-48:] or "model"
    slug += "" if precision == "fp32" else f"-{precision}"
    return (root or cache_dir()) / f"{slug}-{digest.hexdigest()[:20]}"


class OnnxModel:
    """A sentence-transformers model exported to ONNX, run by ONNX Runtime.

    It answers what :class:`~embedguard.core.providers.local.LocalModel` asks of a
    ``SentenceTransformer`` (``encode``, ``tokenizer``, ``max_seq_length``,
    ``get_embedding_dimension``), with the same vectors (cosine >= 0.9999, checked at export).

    Example::

        model = OnnxModel.load("all-MiniLM-L6-v2")        # exported once, then cached
        with EmbeddingClient(profiles.local(), local_model=model) as client:
            client.embed(["a sentence"])

    Args:
        directory: An export made by :meth:`export` (a cache entry).
        threads: ONNX Runtime's threads per call; default: one per core this process may use.
    """

    def __init__(self, directory: Path, *, threads: int | None = None) -> None:
        ort = require("onnxruntime", "onnx")
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            raise ExportError(f"export format {meta.get('format')}, expected {FORMAT}")
        self.path = directory
        self.threads = threads or _cores()
        self.max_seq_length: int = meta["max_seq_length"]
        self._dimensions: int = meta["dimensions"]
        self._inputs: list[str] = meta["inputs"]
        self.precision: str = meta.get("precision", "fp32")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: its warnings go to stderr, not to logging
        self._session = ort.InferenceSession(
            str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        from .local import _quiet_loading

        transformers = require("transformers", "local")
        with _quiet_loading():
            self.tokenizer: Any = transformers.AutoTokenizer.from_pretrained(
                str(directory), local_files_only=True
            )
        self._pad = self.tokenizer.pad_token_id or 0

    def __repr__(self) -> str:
        return f"OnnxModel({self.path.name!r}, threads={self.threads})"

    @classmethod
    def load(
        cls,
        model: str,
        *,
        precision: str = "fp32",
        cache: Path | None = None,
        threads: int | None = None,
    ) -> OnnxModel:
        """The export of ``model`` (a name as in ``profiles.local`` or a directory).

        Exported and cached on first use; raises :class:`~embedguard.ConfigurationError` when
        the model cannot be loaded or exported faithfully.
        """
        from .local import _load_sentence_transformer, _model_location

        location = _model_location(model)
        loaded = load_model(
            location,
            lambda: _load_sentence_transformer(model, location, "cpu"),
            required=True,
            precision=precision,
            cache=cache,
            threads=threads,
        )
        assert isinstance(loaded, OnnxModel)
        return loaded

    @classmethod
    def export(
        cls,
        source: Any,
        directory: Path,
        *,
        precision: str = "fp32",
        threads: int | None = None,
    ) -> OnnxModel:
        """Export ``source`` (a loaded ``SentenceTransformer``) to ``directory``, checked.

        Raises:
            ExportError: The model is not a transformer with mean/CLS pooling, or the export's
                vectors differ from the source's.
        """
        directory.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=directory.parent))
        try:
            meta = {**_export.describe(source), "precision": precision}
            _export.export_graph(source, meta, work)
            source.tokenizer.save_pretrained(str(work))
            (work / "meta.json").write_text(json.dumps(meta, indent=1))
            if precision == "int8":
                _export.quantize(work / "model.onnx")
            model = cls(work, threads=threads)
            _export.check(source, model, _MIN_COSINE[precision])
            try:
                work.rename(directory)
            except OSError:  # another process or client stored the same export first
                shutil.rmtree(work, ignore_errors=True)
            return cls(directory, threads=threads)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def get_embedding_dimension(self) -> int:
        """The vector size."""
        return self._dimensions

    get_sentence_embedding_dimension = get_embedding_dimension

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 32,
        convert_to_numpy: bool = True,
        show_progress_bar: bool | None = None,
        **_: Any,
    ) -> np.ndarray:
        """Embed ``sentences``: float32, one row per text (a vector for a single string).

        Texts run sorted by token count, at most ``batch_size`` (and 8,192 padded tokens) per
        forward pass, so a pass pads its texts to a similar length.
        """
        single = isinstance(sentences, str)
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        out = np.empty((len(texts), self._dimensions), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenizer(
            texts,
            truncation="longest_first",
            max_length=self.max_seq_length,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )["input_ids"]
        order = sorted(range(len(texts)), key=lambda k: -len(ids[k]))
        start = 0
        while start < len(order):
            longest = len(ids[order[start]])
            size = max(1, min(batch_size, _MAX_BATCH_TOKENS // max(1, longest)))
            rows = order[start : start + size]
            out[rows] = self._run([ids[k] for k in rows], longest)
            start += size
        return out[0] if single else out

    def _run(self, ids: list[list[int]], length: int) -> np.ndarray:
        """One forward pass over texts padded to ``length`` tokens."""
        input_ids = np.full((len(ids), length), self._pad, dtype=np.int64)
        mask = np.zeros((len(ids), length), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        result: np.ndarray = self._session.run(["embedding"], feeds)[0]
        return result


def load_model(
    location: str,
    load_torch: Callable[[], Any],
    *,
    required: bool,
    precision: str = "fp32",
    cache: Path | None = None,
    threads: int | None = None,
) -> Any:
    """An :class:`OnnxModel` of ``location``, cached or exported; else ``load_torch()``'s model.

    ONNX Runtime is used when ``onnxruntime`` is installed and the export is cached or succeeds
    (exporting needs ``onnx`` too). Otherwise, unless ``required``, the sentence-transformers
    model is returned (with a warning when an export failed); with ``required``, a missing
    package raises :class:`~embedguard._extras.MissingExtraError` and a failed export
    :class:`~embedguard.ConfigurationError`. ``load_torch``'s own errors (an unknown model)
    propagate either way.
    """
    needed = ("onnxruntime", "onnx", "onnx_ir") if precision == "int8" else ("onnxruntime", "onnx")
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    entry = cache_entry(location, cache, precision)
    if "onnxruntime" not in missing and (entry / "meta.json").is_file():
        try:
            return OnnxModel(entry, threads=threads)
        except Exception as exc:  # a damaged or foreign entry: export it again
            _log.warning("cached ONNX export %s unreadable (%s); exporting again", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
    if missing:
        if required:
            raise MissingExtraError(
                f"{missing[0]!r} is not installed; install it with: pip install 'embedguard[onnx]'"
            )
        _log.debug("ONNX backend unavailable (%s not installed)", ", ".join(missing))
        return load_torch()
    source = load_torch()
    try:
        return OnnxModel.export(source, entry, precision=precision, threads=threads)
    except Exception as exc:  # any failure of the exporter keeps the torch model (see above)
        if required:
            raise ConfigurationError(
                f"cannot export {location!r} to ONNX: {exc}", field="backend"
            ) from exc
        _log.warning("ONNX export of %s failed (%s); using sentence-transformers", location, exc)
        return source


def _cores() -> int:
    """The cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1
