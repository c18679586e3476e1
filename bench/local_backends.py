"""Backends of the local profile: sentence-transformers (torch) against ONNX Runtime (issue 16).

Run: ``PYTHONPATH=src .venv/bin/python bench/local_backends.py [--texts 2000] [--repeats 3]
[--threads 1,2] [--mixed] [--dynamic-int8]`` (needs the ``onnx`` extra).

The bundled all-MiniLM-L6-v2 embeds the same deterministic texts (``--texts`` of 40 words, as
the bench's ``make_texts``; ``--mixed``: 5 to 120 words) with each contender, interleaved in
every repeat (each repeat starts with the next contender), all in this one process (the machine
is shared: only ratios measured in the same run mean anything; the load average is printed with
each repeat):

- ``st-tN``: ``SentenceTransformer.encode`` (batches of 32, its own length sort) with torch at
  N threads (``torch.set_num_threads``; its default here is one per core);
- ``onnx-tN``: :class:`~embedguard.core.providers.local_onnx.OnnxModel` (the cached export)
  with N ONNX Runtime threads, no spin-waiting, batches of 32 sorted by token count;
- ``client-st`` / ``client-onnx``: ``EmbeddingClient(profiles.local(), local_model=...)``, the
  product path (batches of 32 in input order on the client's worker thread), default threads;
- ``onnx-int8``: the ``onnx-int8`` backend (8-bit block-quantised MatMul weights, int8 compute
  with each row's activations quantised per block of 32), default threads;
- ``dyn-int8`` (``--dynamic-int8``): ONNX Runtime's dynamic int8 quantisation of the export (per
  channel weights, one activation scale per batch), default threads: measured to show why it is
  not offered (its min cosine).

Reported per contender: median texts/s, the median of its per-repeat ratio to ``st`` at the
default threads, and the min cosine of its vectors against that contender's on every text
(the quality bar is 0.99). Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _scenarios import _WORDS, make_texts

from embedguard import EmbeddingClient, profiles
from embedguard.core.providers.local import _load_sentence_transformer, _model_location
from embedguard.core.providers.local_onnx import OnnxModel

Encode = Callable[[list[str]], np.ndarray]


def mixed_texts(n: int, seed: int = 2) -> list[str]:
    """``n`` deterministic texts of 5 to 120 words."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=rng.randint(5, 120))) for _ in range(n)]


def with_torch_threads(encode: Encode, threads: int) -> Encode:
    """``encode`` run with torch at ``threads`` threads (restored afterwards)."""
    import torch

    def run(texts: list[str]) -> np.ndarray:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return encode(texts)
        finally:
            torch.set_num_threads(before)

    return run


def int8_model(model: OnnxModel, work: Path) -> OnnxModel:
    """A copy of the export with dynamic int8 weights (per channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    shutil.copytree(model.path, work, dirs_exist_ok=True)
    quantize_dynamic(
        model.path / "model.onnx",
        work / "model.onnx",
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": 1},  # FLOAT: the fused ops defeat shape inference
    )
    return OnnxModel(work)


def contenders(args: argparse.Namespace, work: Path) -> tuple[dict[str, Encode], list[Any]]:
    """The encode function of each contender, and what to close at the end."""
    import torch

    name = "all-MiniLM-L6-v2"
    location = _model_location(name)
    st = _load_sentence_transformer(name, location, "cpu")
    started = time.perf_counter()
    onnx = OnnxModel.load(name)
    print(f"OnnxModel.load (export or cache): {time.perf_counter() - started:.1f} s -> {onnx}")
    default = torch.get_num_threads()

    def st_encode(texts: list[str]) -> np.ndarray:
        return np.asarray(st.encode(texts, convert_to_numpy=True, show_progress_bar=False))

    run: dict[str, Encode] = {f"st-t{default}": st_encode}
    for n in args.threads:
        if n != default:
            run[f"st-t{n}"] = with_torch_threads(st_encode, n)
    for n in args.threads:
        model = onnx if n == onnx.threads else OnnxModel(onnx.path, threads=n)
        run[f"onnx-t{n}"] = model.encode
    clients = [
        EmbeddingClient(profiles.local(), local_model=st, coalesce_window=0),
        EmbeddingClient(profiles.local(), local_model=onnx, coalesce_window=0),
    ]
    run["client-st"] = clients[0].embed
    run["client-onnx"] = clients[1].embed
    started = time.perf_counter()
    onnx_int8 = OnnxModel.load(name, precision="int8")
    print(f"OnnxModel.load int8 (export or cache): {time.perf_counter() - started:.1f} s")
    run["onnx-int8"] = onnx_int8.encode
    if args.dynamic_int8:
        run["dyn-int8"] = int8_model(onnx, work / "int8").encode
    return run, clients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="thread counts to try, e.g. 1,2")
    parser.add_argument("--mixed", action="store_true", help="texts of 5 to 120 words")
    parser.add_argument(
        "--dynamic-int8", action="store_true", help="add ONNX Runtime's dynamic int8 (refused)"
    )
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
    texts = mixed_texts(args.texts) if args.mixed else make_texts(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        run, clients = contenders(args, Path(tmp))
        base = next(iter(run))
        for encode in run.values():  # warm-up: first calls allocate
            encode(texts[:64])
        rates: dict[str, list[float]] = {k: [] for k in run}
        vectors: dict[str, np.ndarray] = {}
        for repeat in range(args.repeats):
            keys = list(run)  # each repeat starts with another contender (the order matters)
            for key in keys[repeat % len(keys) :] + keys[: repeat % len(keys)]:
                encode = run[key]
                started = time.perf_counter()
                vectors[key] = encode(texts)
                rates[key].append(len(texts) / (time.perf_counter() - started))
            line = "  ".join(f"{k} {rates[k][-1]:.0f}" for k in run)
            print(f"repeat {repeat + 1}: load {os.getloadavg()[0]:.1f}; texts/s: {line}")
        for client in clients:
            client.close()
    ref = vectors[base]
    words = "5-120" if args.mixed else "40"
    print(f"\n{len(texts)} texts of {words} words, {args.repeats} repeats, {os.cpu_count()} cores")
    print(f"{'contender':12} {'texts/s':>8} {'x ' + base:>10} {'min cosine':>11}")
    for key, rate in rates.items():
        ratio = statistics.median(r / b for r, b in zip(rate, rates[base], strict=True))
        got = vectors[key]
        cosine = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
        print(f"{key:12} {statistics.median(rate):8.1f} {ratio:10.2f} {cosine.min():11.4f}")


if __name__ == "__main__":
    main()
