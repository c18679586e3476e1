"""Backends of the local profile: sentence-transformers (torch) against ONNX Runtime (issue 16).

Run: ``PYTHONPATH=src .venv/bin/python bench/local_backends.py [--texts 2000] [--repeats 3]
[--threads 1,2] [--mixed] [--dynamic-int8] [--sets]`` (needs the ``onnx`` extra).

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
- ``client-int8``: ``EmbeddingClient(profiles.local(), local_model="onnx-int8")``, the product
  path on that backend;
- ``dyn-int8`` (``--dynamic-int8``): ONNX Runtime's dynamic int8 quantisation of the export (per
  channel weights, one activation scale per batch), default threads: measured to show why it is
  not offered (its min cosine).

Reported per contender: median texts/s, the median of its per-repeat ratio to ``st`` at the
default threads, and the min cosine of its vectors against that contender's on every text
(the quality bar is 0.99). Asserts nothing about time.

``--sets`` measures quality only: the min and mean cosine of the ``onnx`` and ``onnx-int8``
exports' vectors against sentence-transformers' on ``--texts`` texts of each of several kinds
(:func:`text_sets`: 1-5 words, 40 words, 200-400 words that the model truncates, seven other
languages and scripts, code, and all of them mixed in one call).
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


_LANGUAGES = {  # common words of each language; texts are random draws (meaning is not needed)
    "de": "der die das und ist nicht ein zu mit auf für von sich auch es werden aus hat nach bei "
    "um noch wie über kann nur sein wenn Haus Stadt Wasser Arbeit Zeit Regierung Schule groß",
    "fr": "le la les de des et est un une pour dans que qui pas sur au avec ce il elle nous plus "
    "par grand petit maison ville eau travail temps gouvernement école rapide très été être",
    "es": "el la los de y en que un una por con no para es se lo como más pero sus ya este porque "
    "entre cuando muy sin sobre casa ciudad agua trabajo tiempo gobierno escuela rápido",
    "ru": "и в не на я быть он с что а по это она этот к но они мы как из у который то за свой "
    "весь год от так для ты же все дом город вода работа время правительство школа быстро",
    "zh": "的 一 是 不 了 在 人 有 我 他 这 个 们 中 来 上 大 为 和 国 地 到 以 说 "
    "时 要 就 出 会 可 也 你 对 生 能 而 子 那 得 于 着 下 "
    "自 之 年 过 发 后 作 里 城市 水 工作 时间 政府 学校",
    "ja": "の に は を た が で て と し れ さ ある いる も する から な こと として い や れる "
    "など ない この ため その よう また もの という 東京 水 仕事 時間 政府 学校 速い",
    "ar": "في من على إلى أن عن مع هذا هذه التي الذي كان ما لا هو هي كل بعد قبل بين عند مدينة "
    "ماء عمل وقت حكومة مدرسة سريع كبير صغير",
}
_CODE = (
    "def {f}(self, {a}: int, {b}: str = None) -> list[str]:",
    "    return [x for x in {a} if x.{f}({b})]",
    "for (let i = 0; i < {a}.length; i++) {{ {b}.push({a}[i] * 2); }}",
    "SELECT {a}, COUNT(*) FROM {b} WHERE {f} > 10 GROUP BY {a};",
    'if err != nil {{ return nil, fmt.Errorf("{f}: %w", err) }}',
    "    {a} = np.asarray({b}, dtype=np.float32).reshape(-1, 384)",
    "#include <stdio.h>\nint {f}(int {a}) {{ return {a} << 2; }}",
    "const {f} = async ({a}) => await fetch(`/api/${{{a}}}`).then(r => r.json());",
    '    raise ValueError(f"bad {a}: {{{b}!r}}")',
    "impl {f} for Vec<u8> {{ fn len(&self) -> usize {{ self.{a}.len() }} }}",
)
_NAMES = ("data", "items", "user_id", "config", "result", "buffer", "tokens", "parse", "rows")


def text_sets(n: int, seed: int = 7) -> dict[str, list[str]]:
    """``n`` deterministic texts of each kind the quality check covers (see ``--sets``)."""
    rng = random.Random(seed)
    languages = list(_LANGUAGES)
    foreign = []
    for i in range(n):
        language = languages[i % len(languages)]
        joiner = "" if language in ("zh", "ja") else " "
        words = _LANGUAGES[language].split()
        foreign.append(joiner.join(rng.choices(words, k=rng.randint(3, 60))))
    code = [
        "\n".join(
            rng.choice(_CODE).format(
                f=rng.choice(_NAMES), a=rng.choice(_NAMES), b=rng.choice(_NAMES)
            )
            for _ in range(rng.randint(1, 8))
        )
        for _ in range(n)
    ]
    sets = {
        "1-5 words": [" ".join(rng.choices(_WORDS, k=rng.randint(1, 5))) for _ in range(n)],
        "40 words": make_texts(n, seed=seed),
        "200-400 words (cut)": [
            " ".join(rng.choices(_WORDS, k=rng.randint(200, 400))) for _ in range(n)
        ],
        "7 languages": foreign,
        "code": code,
    }
    sets["all mixed"] = [t for group in zip(*sets.values(), strict=True) for t in group]
    return sets


def quality(n: int) -> None:
    """Print each export's min / mean cosine against sentence-transformers per text set."""
    name = "all-MiniLM-L6-v2"
    st = _load_sentence_transformer(name, _model_location(name), "cpu")
    models = {p: OnnxModel.load(name, precision=p) for p in ("fp32", "int8")}
    print(f"{n} texts per set; min / mean cosine against sentence-transformers")
    print(f"{'set':22} {'onnx (fp32)':>16} {'onnx-int8':>16}")
    for kind, texts in text_sets(n).items():
        ref = st.encode(texts, convert_to_numpy=True, show_progress_bar=False)
        cells = []
        for model in models.values():
            got = model.encode(texts)
            cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
            cells.append(f"{cos.min():.4f} / {cos.mean():.4f}")
        print(f"{kind:22} {cells[0]:>16} {cells[1]:>16}", flush=True)


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
    clients.append(EmbeddingClient(profiles.local(), local_model="onnx-int8", coalesce_window=0))
    run["client-int8"] = clients[-1].embed
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
    parser.add_argument(
        "--sets", action="store_true", help="quality only: min cosine per kind of text"
    )
    args = parser.parse_args()
    if args.sets:
        quality(args.texts)
        return
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
