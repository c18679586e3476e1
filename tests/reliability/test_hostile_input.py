"""Hostile input and bad configuration, through the public API: refused early, typed, precise.

Any list of texts either comes back as exactly one own vector per input, in input order, with
each distinct text sent once; or raises InputValidationError naming the bad input, before a
single request is sent. Any invalid setting raises ConfigurationError naming the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from annotated_types import Ge, Gt, Le
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedguard import (
    BatchPolicy,
    BreakerPolicy,
    CompressionPolicy,
    ConfigurationError,
    EmbeddingClient,
    InputValidationError,
    ProviderProfile,
    RateLimit,
    RetryPolicy,
    Timeouts,
    profiles,
)
from embedguard.testing import EmbeddingServer, deterministic_vectors

from .conftest import DIM, KEY, fast_profile, figure, knob

LIMIT = 512  # tokens per input; "normal" texts stay far below it, "huge" ones far above
EXAMPLES = int(knob("EMBEDGUARD_FUZZ_EXAMPLES", 300))
_SURROGATES = ("\ud800", "\udbff", "\udc00", "\udfff")
_SCRIPTS = ["ascii words", "ünïcödé", "日本語", "кириллица", "عربي", "עברית", "🚀✨",
            "👩\u200d👩\u200d👧"]  # fmt: skip

_normal = st.one_of(
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    st.sampled_from(_SCRIPTS),
    st.lists(st.sampled_from(_SCRIPTS), min_size=2, max_size=4).map(" ".join),
    st.sampled_from(["\x00", "a\x00b", "nul\x00\x00end", "\u200b", "tab\tinside"]),
).filter(lambda t: not t.isspace())
_bad = st.one_of(
    st.just(""),
    st.text(st.sampled_from(" \t\n\r\x0b\x0c\x1c\x85\xa0\u2028\u3000"), min_size=1, max_size=6),
    st.tuples(_normal, st.sampled_from(_SURROGATES), st.integers(0, 40)).map(
        lambda p: p[0][: p[2]] + p[1] + p[0][p[2] :]
    ),
    st.integers(600, 2_000).map(lambda n: "lorem " * n),  # far over LIMIT tokens
    st.sampled_from([None, 7, 1.5, b"bytes", ["nested"], {"a": 1}]),
)


@st.composite
def _hostile_lists(draw: st.DrawFn) -> list[Any]:
    """Normal texts with duplicates; half the time, one to three bad items at random places."""
    items: list[Any] = draw(st.lists(_normal, min_size=0, max_size=25))
    for _ in range(draw(st.integers(0, 8)) if items else 0):
        items.insert(draw(st.integers(0, len(items))), draw(st.sampled_from(items)))
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            items.insert(draw(st.integers(0, len(items))), draw(_bad))
    return items


def _expected_bad_index(items: list[Any]) -> int | None:
    """The index the error must name: the first structurally invalid item (not a str, empty,
    whitespace only, lone surrogate), else the first text over the token limit."""
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item or item.isspace():
            return i
        if any(ch in _SURROGATES or "\ud800" <= ch <= "\udfff" for ch in item):
            return i
    return next((i for i, item in enumerate(items) if item.startswith("lorem lorem")), None)


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[EmbeddingServer, EmbeddingClient]]:
    """One server and one client for every example (a fresh pair per example is too slow)."""
    with EmbeddingServer(dimensions=DIM) as srv:
        batching = {"max_inputs": 16, "max_tokens_per_input": LIMIT}
        profile = fast_profile(srv, batching=batching)
        with EmbeddingClient(profile, api_key=KEY, environ={}) as client:
            yield srv, client


_checked = {"lists": 0, "inputs": 0, "refused": 0}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=_hostile_lists())
def test_any_list_gets_own_vectors_in_order_or_a_typed_refusal_before_sending(
    live: tuple[EmbeddingServer, EmbeddingClient], items: list[Any]
) -> None:
    """Any list gets exact vectors in order, or a refusal naming the bad index with nothing sent."""
    server, client = live
    before = len(server.requests)
    bad = _expected_bad_index(items)
    _checked["lists"] += 1
    _checked["inputs"] += len(items)
    if bad is not None:
        with pytest.raises(InputValidationError) as info:
            client.embed(items)
        assert info.value.index == bad
        assert f"input {bad}" in str(info.value)
        assert len(server.requests) == before  # refused before anything was sent
        _checked["refused"] += 1
    else:
        vectors = client.embed(items)
        assert vectors.shape == (len(items), DIM) and vectors.dtype == np.float32
        if items:
            np.testing.assert_array_equal(vectors, deterministic_vectors(items, DIM))
        sent = [t for r in server.requests[before:] for t in r.inputs]
        assert sorted(sent) == sorted(set(items))  # every distinct text exactly once
    figure("input.hostile_lists_checked", _checked["lists"])
    figure("input.hostile_inputs_checked", _checked["inputs"])
    figure("input.hostile_lists_refused_before_sending", _checked["refused"])


def test_bare_string_and_non_sequences_are_refused_before_sending(
    server: EmbeddingServer,
) -> None:
    """A bare str, bytes, generator, None, dict or int is refused before anything is sent."""
    with EmbeddingClient(fast_profile(server), api_key=KEY, environ={}) as client:
        for bad in ("one text", b"bytes", (t for t in ["a"]), None, {"a": "b"}, 42):
            with pytest.raises(InputValidationError):
                client.embed(bad)  # type: ignore[arg-type]
        with pytest.raises(InputValidationError) as info:
            client.embed_query(3)  # type: ignore[arg-type]
        assert info.value.index == 0
    assert server.requests == []


# -- configuration -------------------------------------------------------------------------------
_POLICIES: dict[str, type[Any]] = {
    "timeouts": Timeouts,
    "retry": RetryPolicy,
    "breaker": BreakerPolicy,
    "batching": BatchPolicy,
    "rate_limit": RateLimit,
    "compression": CompressionPolicy,
}


def _bounded_fields() -> list[tuple[str, str, Any]]:
    """Every numeric policy field with a bound, as (policy, field, a value past the bound)."""
    out = []
    for section, model in _POLICIES.items():
        for name, info in model.model_fields.items():
            for bound in info.metadata:
                limit: Any = getattr(bound, type(bound).__name__.lower(), None)
                if isinstance(bound, Ge):
                    out.append((section, name, limit - 1))
                elif isinstance(bound, Gt):
                    out.append((section, name, limit - 0.5))
                    out.append((section, name, -1))
                elif isinstance(bound, Le):
                    out.append((section, name, limit + 1))
    return out


@pytest.mark.parametrize(("section", "name", "value"), _bounded_fields())
def test_every_out_of_range_policy_value_names_its_field(
    section: str, name: str, value: Any
) -> None:
    """Each bounded policy field set past its bound raises ConfigurationError naming it."""
    overrides: dict[str, Any] = {section: {name: value}}
    with pytest.raises(ConfigurationError) as info:
        profiles.openai(**overrides)
    assert info.value.field == f"{section}.{name}"
    figure("config.invalid_settings_checked", 1, add=True)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: EmbeddingClient(profiles.openai(), environ={}), "api_key"),
        (lambda: EmbeddingClient(profiles.openai(), api_key="   ", environ={}), "api_key"),
        (lambda: EmbeddingClient(profiles.mistral(), environ={}), "api_key"),
        (
            lambda: EmbeddingClient(
                profiles.openai(api_key_env="MY_KEY"), environ={"OPENAI_API_KEY": KEY}
            ),
            "api_key",
        ),
        (lambda: EmbeddingClient(profiles.azure(), api_key=KEY, environ={}), "base_url"),
        (
            lambda: EmbeddingClient(
                profiles.openai(), api_key=KEY, environ={"OPENAI_BASE_URL": "ftp://host/v1"}
            ),
            "base_url",
        ),
        (
            lambda: EmbeddingClient(profiles.ollama(), environ={"OLLAMA_HOST": "ftp://h"}),
            "base_url",
        ),
        (lambda: profiles.openai(base_url="localhost:8080/v1"), "base_url"),
        (lambda: profiles.openai(base_url="http://"), "base_url"),
        (lambda: ProviderProfile(provider="acme", model="m"), "provider"),  # type: ignore[arg-type]
        (lambda: profiles.get("acme"), "profile"),
        (lambda: EmbeddingClient({"provider": "openai"}, api_key=KEY), "profile"),  # type: ignore[arg-type]
        (
            lambda: EmbeddingClient(profiles.openai(), api_key=KEY, context_policy="drop"),  # type: ignore[arg-type]
            "context_policy",
        ),
        (
            lambda: EmbeddingClient(profiles.openai(), api_key=KEY, coalesce_window=-1),
            "coalesce_window",
        ),
        (
            lambda: EmbeddingClient(profiles.openai(), api_key=KEY, token_provider=lambda: "t"),
            "token_provider",
        ),
        (lambda: profiles.openai(pool_size=0), "pool_size"),
        (lambda: profiles.openai(dimensions=-3), "dimensions"),
        (lambda: profiles.openai(timeouts=-1), "timeouts.request"),
        (lambda: profiles.openai(price_per_million_tokens=-0.1), "price_per_million_tokens"),
    ],
)
def test_bad_configuration_is_refused_at_construction(build: Any, field: str) -> None:
    """Bad keys, providers, URLs and options raise ConfigurationError naming the field."""
    with pytest.raises(ConfigurationError) as info:
        build()
    assert info.value.field == field, str(info.value)
    assert KEY not in str(info.value)
    figure("config.invalid_settings_checked", 1, add=True)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: profiles.openai(base_url="http://host:abc/v1"), id="port-abc"),
        pytest.param(lambda: profiles.openai(base_url="https://host:99999/v1"), id="port-99999"),
        pytest.param(lambda: profiles.openai(base_url="http://bad host/v1"), id="host-space"),
        pytest.param(
            lambda: EmbeddingClient(
                profiles.openai(), api_key=KEY, environ={"OPENAI_BASE_URL": "http://h:abc/v1"}
            ),
            id="env-port-abc",
        ),
        pytest.param(
            lambda: EmbeddingClient(profiles.ollama(), environ={"OLLAMA_HOST": "not a url"}),
            id="ollama-host-space",
        ),
    ],
)
def test_malformed_url_is_refused_at_construction(build: Any) -> None:
    """A base URL with a bad port or a space in the host is refused, naming base_url."""
    with pytest.raises(ConfigurationError) as info:
        build()
    assert info.value.field == "base_url"
