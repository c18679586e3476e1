"""The ONNX Runtime backend of in-process models (extra ``onnx``).

A sentence-transformers model made of a transformer, mean or CLS pooling and (optionally) a
normalization is exported once, offline, from its local weights: ``torch.onnx.export`` of the
transformer with the pooling and the normalization inside the graph, then ONNX Runtime's
transformer fusions (attention, layer norms, GELU). Before it is used, the export is checked
against the sentence-transformers model on probe texts (a long one, an empty one, accents, CJK):
a cosine below 0.9999 for any of them, and the export is not kept.

``precision="int8"`` (backend ``"onnx-int8"``) also stores the MatMul weights outside the fused
attention as 8-bit blocks (see :func:`_quantize`; needs ``onnx-ir``); its bar is 0.999. Measured
on 2,000 texts (``bench/local_backends.py``): min cosine 0.9996 against sentence-transformers,
and about 1.15x the fp32 export's throughput. ONNX Runtime's dynamic int8 quantisation is not
offered: faster still, but a min cosine of 0.98 (the bar is 0.99).

The export is cached in ``$XDG_CACHE_HOME/embedguard/onnx`` (default ``~/.cache``), keyed by the
model's location, its files (names, sizes, modification times) and the versions of torch,
transformers, sentence-transformers, onnx and onnxruntime; a later process loads the cached graph
and the model's tokenizer without loading the torch model. A model named (not a directory) is
keyed by its name.

Texts run sorted by token count, in batches padded to their longest text, on an ONNX Runtime
session with one thread per available core and no spin-waiting (on a loaded machine, threads
that spin for work take the cores the other threads need).
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
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..._extras import MissingExtraError, require
from ..errors import ConfigurationError

__all__ = ["OnnxModel", "cache_dir", "load_model"]

_log = logging.getLogger("embedguard.local")

FORMAT = 1  # bump when the export changes: entries of another format are not read
PRECISIONS = ("fp32", "int8")
_MIN_COSINE = {"fp32": 0.9999, "int8": 0.999}  # the check's bar on the probe texts
_MAX_BATCH_TOKENS = 8192  # padded tokens per forward pass (bounds the attention's memory)
_PROBES = (
    "The cat sat on the mat.",
    "",
    "  Leading and trailing spaces, UPPER case and digits 12345.  ",
    "Ünïcödé àccents, an emoji 🙂 and CJK 漢字テキスト.",
    "short",
    "A much longer text, far over the model's limit, so the truncation is checked too. " * 40,
)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_VERSIONED = ("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime")


class ExportError(Exception):
    """The model cannot be exported faithfully; the message says why."""


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
            meta = {**_describe(source), "precision": precision}
            _export_graph(source, meta, work)
            source.tokenizer.save_pretrained(str(work))
            (work / "meta.json").write_text(json.dumps(meta, indent=1))
            if precision == "int8":
                _quantize(work / "model.onnx")
            model = cls(work, threads=threads)
            _check(source, model, _MIN_COSINE[precision])
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


def _describe(source: Any) -> dict[str, Any]:
    """What the export needs to know of the model; refuses what it cannot reproduce."""
    kinds = [type(module).__name__ for module in source]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ExportError(f"modules {kinds}, expected Transformer, Pooling[, Normalize]")
    transformer, pooling = source[0], source[1]
    mode = pooling.pooling_mode if hasattr(pooling, "pooling_mode") else None
    if mode not in ("mean", "cls", ("mean",), ("cls",)) or not pooling.include_prompt:
        raise ExportError(f"pooling {mode!r}, expected mean or cls")
    if getattr(transformer, "do_lower_case", False) or source.default_prompt_name:
        raise ExportError("the model lowercases or prompts its texts")
    inputs = [n for n in _INPUTS if n in source.tokenizer.model_input_names]
    if "attention_mask" not in inputs or not source.tokenizer.is_fast:
        raise ExportError("the tokenizer is not a fast tokenizer with an attention mask")
    return {
        "format": FORMAT,
        "pooling": mode if isinstance(mode, str) else mode[0],
        "normalize": len(kinds) == 3,
        "max_seq_length": int(source.max_seq_length),
        "dimensions": int(source.get_embedding_dimension()),
        "inputs": inputs,
    }


def _export_graph(source: Any, meta: dict[str, Any], work: Path) -> None:
    """Write ``work/model.onnx``: transformer, pooling, normalization; fused for ONNX Runtime."""
    torch = require("torch", "local")
    transformer = source[0].auto_model
    names: list[str] = meta["inputs"]

    class Pooled(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *args: Any) -> Any:
            features = dict(zip(names, args, strict=True))
            hidden = self.transformer(**features).last_hidden_state
            if meta["pooling"] == "cls":
                pooled = hidden[:, 0]
            else:
                mask = features["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if meta["normalize"]:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled

    sample = source.tokenizer(["a probe", "a longer probe text"], padding=True, return_tensors="pt")
    dynamic = {name: {0: "batch", 1: "tokens"} for name in names}
    # The fusions recognise the eager attention's graph (not the SDPA kernel's): export that one.
    attention = getattr(transformer.config, "_attn_implementation", None)
    setter = getattr(transformer, "set_attn_implementation", None)
    raw = work / "raw.onnx"
    try:
        if setter is not None and attention not in (None, "eager"):
            setter("eager")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's and the legacy exporter's warnings
            torch.onnx.export(
                Pooled().eval(),
                tuple(sample[name] for name in names),
                str(raw),
                input_names=names,
                output_names=["embedding"],
                dynamic_axes={**dynamic, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,  # the TorchScript exporter: its graph is what the fusions know
            )
    finally:
        if setter is not None and attention not in (None, "eager"):
            setter(attention)
    config = transformer.config
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimizer = importlib.import_module("onnxruntime.transformers.optimizer")
            fused = optimizer.optimize_model(
                str(raw),
                model_type="bert",
                num_heads=config.num_attention_heads,
                hidden_size=config.hidden_size,
                opt_level=0,  # graph fusions only; the session applies its own at load
            )
            fused.save_model_to_file(str(work / "model.onnx"))
        raw.unlink()
    except Exception as exc:  # unfused is slower but as faithful: the check below decides
        _log.info("ONNX fusions skipped (%s)", exc)
        raw.rename(work / "model.onnx")


def _check(source: Any, model: OnnxModel, min_cosine: float) -> None:
    """Refuse an export whose vectors differ from the source model's on the probe texts."""
    probes = list(_PROBES)
    expected = source.encode(
        probes, batch_size=len(probes), convert_to_numpy=True, show_progress_bar=False
    )
    got = model.encode(probes, batch_size=2)  # several passes, with padding
    cosine = (expected * got).sum(1) / (
        np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1)
    )
    if got.shape != expected.shape or not np.isfinite(cosine).all():
        raise ExportError(f"the export gives shape {got.shape}, expected {expected.shape}")
    if cosine.min() < min_cosine:
        raise ExportError(f"the export's vectors differ (min cosine {cosine.min():.5f})")


def _quantize(path: Path) -> None:
    """Rewrite the graph at ``path`` with 8-bit MatMul weights in blocks of 32 (``MatMulNBits``).

    The weights outside the fused attention are stored as int8 with one scale per 32 values, and
    the products run in int8 with each row's activations quantised per block of 32 (accuracy
    level 4): a text's vector does not depend on the other texts of its batch, unlike ONNX
    Runtime's dynamic quantisation (one scale per batch), which also loses more (min cosine 0.98).
    """
    onnx = require("onnx", "onnx")
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    try:
        nbits = importlib.import_module("onnxruntime.quantization.matmul_nbits_quantizer")
    finally:  # importing it calls logging.basicConfig(level=INFO): the application's to set
        root.setLevel(level)
        root.handlers[:] = handlers
    chatty = logging.getLogger(nbits.__name__)
    before = chatty.level
    chatty.setLevel(logging.WARNING)  # an INFO line for every node it leaves alone
    try:
        quantizer = nbits.MatMulNBitsQuantizer(
            onnx.load(str(path)),
            bits=8,
            block_size=32,
            is_symmetric=True,
            accuracy_level=4,
            op_types_to_quantize=("MatMul",),
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(path))
    finally:
        chatty.setLevel(before)
