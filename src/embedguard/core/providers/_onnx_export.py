"""Exporting a sentence-transformers model to ONNX (see :mod:`.local_onnx`): what can be
exported, the graph, its 8-bit variant, and the check against the source model."""

from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._extras import require

if TYPE_CHECKING:
    from .local_onnx import OnnxModel

__all__ = ["FORMAT", "ExportError", "check", "describe", "export_graph", "quantize"]

_log = logging.getLogger("embedguard.local")

FORMAT = 1  # bump when the export changes: entries of another format are not read
_PROBES = (
    "The cat sat on the mat.",
    "",
    "  Leading and trailing spaces, UPPER case and digits 12345.  ",
    "Ünïcödé àccents, an emoji 🙂 and CJK 漢字テキスト.",
    "short",
    "A much longer text, far over the model's limit, so the truncation is checked too. " * 40,
)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ExportError(Exception):
    """The model cannot be exported faithfully; the message says why."""


def describe(source: Any) -> dict[str, Any]:
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


def export_graph(source: Any, meta: dict[str, Any], work: Path) -> None:
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


def check(source: Any, model: OnnxModel, min_cosine: float) -> None:
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


def quantize(path: Path) -> None:
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
