"""Configuration: frozen policies, built-in profiles, round trips and typed errors."""

from pathlib import Path

import pytest
from pydantic import BaseModel

from embedguard import (
    BatchPolicy,
    BreakerPolicy,
    ConfigurationError,
    ProviderProfile,
    RateLimit,
    RetryPolicy,
    Timeouts,
    profiles,
)

BUILTINS = [
    profiles.openai(),
    profiles.openai("text-embedding-3-large"),
    profiles.openai("text-embedding-ada-002"),
    profiles.azure(deployment="emb", api_version="2024-10-21"),
    profiles.azure(),
    profiles.mistral(),
    profiles.ollama(),
    profiles.openai_compatible("bge-m3", base_url="http://127.0.0.1:8000/v1"),
    profiles.local(),
]


@pytest.mark.parametrize("profile", BUILTINS, ids=lambda p: f"{p.name}-{p.model}")
def test_dict_round_trip(profile: ProviderProfile) -> None:
    """dump -> load through a dict gives an equal profile."""
    assert ProviderProfile.from_dict(profile.to_dict()) == profile


@pytest.mark.parametrize("profile", BUILTINS, ids=lambda p: f"{p.name}-{p.model}")
def test_toml_round_trip(profile: ProviderProfile, tmp_path: Path) -> None:
    """dump -> load through a TOML file gives an equal profile."""
    path = tmp_path / "profile.toml"
    path.write_text(profile.to_toml(), encoding="utf-8")
    assert ProviderProfile.from_toml(path) == profile


@pytest.mark.parametrize("profile", BUILTINS, ids=lambda p: f"{p.name}-{p.model}")
def test_env_round_trip(profile: ProviderProfile) -> None:
    """dump -> load through environment variables gives an equal profile."""
    env = profile.to_env()
    assert all(key.startswith("EMBEDGUARD_") for key in env)
    assert ProviderProfile.from_env(env) == profile


def test_builtin_values_match_the_table() -> None:
    """The built-in profiles carry the documented numbers."""
    o, a, m, lo = profiles.openai(), profiles.azure(), profiles.mistral(), profiles.local()
    assert (o.timeouts.request, o.retry.max_retries, o.retry.initial_delay) == (60.0, 3, 1.0)
    assert (o.batching.max_inputs, o.compression.threshold_bytes, o.pool_size) == (2048, 1024, 20)
    assert (o.breaker.failure_rate_threshold, o.breaker.window_size) == (0.75, 20)
    assert (o.breaker.minimum_calls, o.breaker.success_threshold) == (10, 2)
    assert (o.breaker.open_timeout, o.breaker.half_open_max_attempts) == (30.0, 3)
    assert (o.batching.max_tokens_per_request, o.batching.max_tokens_per_input) == (300_000, 8191)
    assert (m.timeouts.request, m.retry.max_retries, m.retry.initial_delay) == (30.0, 3, 0.5)
    assert (m.batching.max_inputs, m.compression.threshold_bytes, m.pool_size) == (128, 512, 10)
    assert (m.breaker.minimum_calls, m.breaker.success_threshold) == (10, 2)
    assert (m.breaker.open_timeout, m.breaker.half_open_max_attempts) == (20.0, 2)
    assert (a.timeouts.request, a.retry.max_retries, a.retry.initial_delay) == (90.0, 4, 2.0)
    assert (a.batching.max_inputs, a.pool_size) == (2048, 15)
    assert (a.breaker.minimum_calls, a.breaker.success_threshold) == (10, 3)
    assert (a.breaker.open_timeout, a.breaker.half_open_max_attempts) == (60.0, 3)
    assert (lo.timeouts.request, lo.retry.max_retries, lo.retry.initial_delay) == (10.0, 2, 0.1)
    assert (lo.batching.max_inputs, lo.compression.threshold_bytes, lo.pool_size) == (32, 2048, 5)
    assert not lo.breaker.enabled
    # Rate limits are learned from assumed values (no built-in cap); gzip is off everywhere.
    assert all(p.rate_limit is None and not p.compression.enabled for p in (o, a, m, lo))
    assumed = {name: profiles.assumed_rate_limit(name) for name in ("openai", "azure", "mistral")}
    assert assumed == {
        "openai": RateLimit(requests_per_minute=3000, tokens_per_minute=1_000_000),
        "azure": RateLimit(requests_per_minute=300, tokens_per_minute=300_000),
        "mistral": RateLimit(requests_per_minute=100, tokens_per_minute=100_000),
    }
    assert profiles.assumed_rate_limit("local") is None
    assert profiles.assumed_rate_limit("ollama") is None
    assert all(p.metrics for p in BUILTINS)


def test_model_dimensions() -> None:
    """Built-in profiles know each model's native dimensions."""
    assert profiles.openai().dimensions == 1536
    assert profiles.openai("text-embedding-3-large").dimensions == 3072
    assert profiles.openai("text-embedding-ada-002").dimensions == 1536
    assert profiles.mistral().dimensions == 1024
    assert profiles.local().dimensions == 384
    assert profiles.openai("text-embedding-3-large", dimensions=256).dimensions == 256
    assert profiles.ollama("some-model").dimensions is None


def test_policies_are_frozen_and_compare_by_value() -> None:
    """Policies are immutable and equal when their fields are."""
    policy = RetryPolicy(max_retries=2)
    assert policy == RetryPolicy(max_retries=2)
    assert policy != RetryPolicy()
    with pytest.raises(Exception, match="frozen"):
        policy.max_retries = 5  # type: ignore[misc]


def test_repr_is_compact() -> None:
    """repr shows only the fields that differ from their defaults."""
    assert repr(RetryPolicy(max_retries=2)) == "RetryPolicy(max_retries=2)"
    assert repr(Timeouts()) == "Timeouts()"


def test_single_number_timeout() -> None:
    """A profile accepts one number as its timeout."""
    profile = profiles.openai(timeouts=12)
    assert profile.timeouts == Timeouts(request=12.0, connect=5.0)
    assert profiles.openai(timeouts=2).timeouts.connect == 2.0


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: RetryPolicy(max_retries=-1), "max_retries"),
        (lambda: RetryPolicy(jitter=2), "jitter"),
        (lambda: BreakerPolicy(failure_threshold=0), "failure_threshold"),
        (lambda: BatchPolicy(max_inputs=0), "max_inputs"),
        (lambda: RateLimit(tokens_per_minute=-5), "tokens_per_minute"),
        (lambda: profiles.openai(pool_size=0), "pool_size"),
        (lambda: profiles.openai(retry={"max_retries": -1}), "retry.max_retries"),
        (lambda: profiles.openai(base_url="ftp://x"), "base_url"),
        (lambda: profiles.openai(base_url="not a url"), "base_url"),
        (lambda: ProviderProfile(provider="nope", model="m"), "provider"),  # type: ignore[arg-type]
        (lambda: ProviderProfile(provider="openai", model=""), "model"),
        (lambda: profiles.get("nope"), "profile"),
        (lambda: ProviderProfile.from_env({}), "EMBEDGUARD_PROVIDER"),
        (lambda: profiles.openai(unknown_field=1), "unknown_field"),
    ],
)
def test_invalid_config_names_the_field(build: object, field: str) -> None:
    """Invalid settings raise ConfigurationError naming the field."""
    with pytest.raises(ConfigurationError) as info:
        build()  # type: ignore[operator]
    assert info.value.field == field
    assert field in str(info.value)


def test_cross_field_rules() -> None:
    """Settings that contradict each other are refused."""
    with pytest.raises(ConfigurationError, match="success_threshold"):
        BreakerPolicy(success_threshold=4, half_open_max_attempts=3)
    with pytest.raises(ConfigurationError, match="max_tokens_per_input"):
        BatchPolicy(max_tokens_per_request=100, max_tokens_per_input=200)
    with pytest.raises(ConfigurationError, match="azure"):
        profiles.openai(deployment="x")
    with pytest.raises(ConfigurationError, match="extra_body"):
        profiles.ollama(extra_body={"input": "x"})


def test_evolve_validates() -> None:
    """evolve() applies changes and validates them."""
    base = profiles.openai()
    changed = base.evolve(pool_size=4, retry=RetryPolicy(max_retries=1))
    assert (changed.pool_size, changed.retry.max_retries) == (4, 1)
    assert base.pool_size == 20
    with pytest.raises(ConfigurationError, match="pool_size"):
        base.evolve(pool_size=-1)


def test_toml_and_env_errors_are_typed() -> None:
    """Broken TOML or env values raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match="TOML"):
        ProviderProfile.from_toml("provider = ")
    with pytest.raises(ConfigurationError, match="pool_size"):
        ProviderProfile.from_env(
            {
                "EMBEDGUARD_PROVIDER": "openai",
                "EMBEDGUARD_MODEL": "m",
                "EMBEDGUARD_POOL_SIZE": "many",
            }
        )
    with pytest.raises(ConfigurationError) as info:
        ProviderProfile.from_dict([1, 2])  # type: ignore[arg-type]
    assert "mapping" in str(info.value)


def test_env_loading_with_nested_fields() -> None:
    """Nested fields load from double-underscore variables; 'none' means unlimited."""
    profile = ProviderProfile.from_env(
        {
            "EMBEDGUARD_PROVIDER": "mistral",
            "EMBEDGUARD_MODEL": "mistral-embed",
            "EMBEDGUARD_RETRY__MAX_RETRIES": "7",
            "EMBEDGUARD_RATE_LIMIT__TOKENS_PER_MINUTE": "none",
            "EMBEDGUARD_EXTRA_BODY": '{"user": "u1"}',
            "OTHER": "ignored",
        }
    )
    assert profile.retry.max_retries == 7
    assert profile.rate_limit.tokens_per_minute is None
    assert profile.extra_body == {"user": "u1"}


def test_profile_names() -> None:
    """profiles.get() knows every built-in name and applies overrides."""
    assert profiles.names() == sorted(profiles.names())
    assert set(profiles.names()) >= {"openai", "azure", "mistral", "ollama", "local"}
    assert profiles.get("mistral", pool_size=3).pool_size == 3
    with pytest.raises(ConfigurationError, match="model"):
        profiles.get("openai_compatible")


# -- layers: a partial override changes only what it names -----------------------------------
MISTRAL_64 = {**profiles.mistral().to_dict(), "batching": {
    **profiles.mistral().batching.to_dict(), "max_inputs": 64}}  # fmt: skip


@pytest.mark.parametrize(
    "build",
    [
        lambda: profiles.mistral(batching={"max_inputs": 64}),
        lambda: profiles.mistral(batching=BatchPolicy(max_inputs=64)),
        lambda: profiles.get("mistral", batching={"max_inputs": 64}),
        lambda: profiles.mistral().evolve(batching={"max_inputs": 64}),
        lambda: ProviderProfile.from_dict({"provider": "mistral", "batching": {"max_inputs": 64}}),
        lambda: ProviderProfile.from_toml('provider = "mistral"\n[batching]\nmax_inputs = 64\n'),
        lambda: ProviderProfile.from_env(
            {"EMBEDGUARD_PROVIDER": "mistral", "EMBEDGUARD_BATCHING__MAX_INPUTS": "64"}
        ),
    ],
    ids=["kwargs", "policy-object", "get", "evolve", "from_dict", "from_toml", "from_env"],
)
def test_partial_nested_override_keeps_the_provider_values(build: object) -> None:
    """Naming one batching field keeps Mistral's 16,384-token request cap, in every loader."""
    profile = build()  # type: ignore[operator]
    assert profile.batching.max_tokens_per_request == 16_384
    assert profile.to_dict() == MISTRAL_64


def test_issue_examples_keep_the_azure_values() -> None:
    """The README's azure(retry=...) keeps the 2 s first backoff; an RPM cap leaves TPM learned
    (from Azure's assumed 300,000, never raised to another provider's number)."""
    retry = profiles.azure(retry={"max_retries": 6}).retry
    assert (retry.max_retries, retry.initial_delay) == (6, 2.0)
    limits = profiles.azure(rate_limit={"requests_per_minute": 600}).rate_limit
    assert limits is not None and (limits.requests_per_minute, limits.tokens_per_minute) == (
        600,
        None,
    )
    assumed = profiles.assumed_rate_limit("azure")
    assert assumed is not None and assumed.tokens_per_minute == 300_000
    assert profiles.azure(retry=RetryPolicy(max_retries=6)).retry == retry
    assert profiles.azure(timeouts=Timeouts(connect=2)).timeouts == Timeouts(request=90, connect=2)


def test_a_provider_key_selects_the_base() -> None:
    """from_dict/from_toml/from_env start from the named provider's profile."""
    assert ProviderProfile.from_dict({"provider": "ollama", "model": "m"}) == profiles.ollama("m")
    assert ProviderProfile.from_toml('provider = "azure"\n') == profiles.azure()
    assert ProviderProfile.from_env({"EMBEDGUARD_PROVIDER": "local"}) == profiles.local()
    with pytest.raises(ConfigurationError, match="model"):
        ProviderProfile.from_dict({"provider": "openai_compatible"})


def test_evolve_to_another_model_or_provider_rebases_the_defaults() -> None:
    """Values the old base implied follow the new model/provider; explicit ones stay."""
    assert profiles.openai().evolve(model="text-embedding-3-large").dimensions == 3072
    kept = profiles.openai(dimensions=256).evolve(model="text-embedding-3-large")
    assert kept.dimensions == 256
    moved = profiles.openai(pool_size=3, retry={"max_retries": 9}).evolve(provider="azure")
    assert (moved.pool_size, moved.retry.max_retries, moved.retry.initial_delay) == (3, 9, 2.0)
    assert moved.rate_limit == profiles.azure().rate_limit and moved.name == "azure"


def test_extra_body_is_one_value_replaced_whole() -> None:
    """extra_body is not a policy: a new dict replaces the old one."""
    profile = profiles.ollama(extra_body={"keep_alive": "5m", "truncate": True})
    assert profile.evolve(extra_body={"keep_alive": "1m"}).extra_body == {"keep_alive": "1m"}


def test_raw_profile_round_trips_through_toml() -> None:
    """A None that the provider's base would fill in is written out, so it loads back."""
    raw = ProviderProfile(provider="openai", model="text-embedding-3-small")
    assert raw.dimensions is None
    assert ProviderProfile.from_toml(raw.to_toml()) == raw
    assert 'base_url = "none"' not in profiles.openai().to_toml()


# -- explain: every value and where it came from -----------------------------------------------
LEAVES = {
    f"{name}.{sub}" if isinstance(value, BaseModel) else name
    for name, value in profiles.openai()
    for sub in (type(value).model_fields if isinstance(value, BaseModel) else [""])
}


def test_sources_name_each_layer(tmp_path: Path) -> None:
    """provider default, file, env and argument each label the values they set."""
    path = tmp_path / "prod.toml"
    path.write_text('provider = "azure"\npool_size = 4\n[retry]\nmax_retries = 6\n')
    from_file = ProviderProfile.from_toml(path)
    profile = from_file.evolve(retry={"max_delay": 5.0})
    sources = profile.sources()
    assert sources["pool_size"] == sources["retry.max_retries"] == f"file {path}"
    assert sources["retry.max_delay"] == "argument"
    assert sources["retry.initial_delay"] == sources["timeouts.request"] == "provider default"
    env = ProviderProfile.from_env(
        {"EMBEDGUARD_PROVIDER": "openai", "EMBEDGUARD_RETRY__MAX_RETRIES": "1"}
    ).sources()
    assert env["retry.max_retries"] == "env EMBEDGUARD_RETRY__MAX_RETRIES"
    assert env["provider"] == "env EMBEDGUARD_PROVIDER" and env["pool_size"] == "provider default"
    assert profiles.openai("text-embedding-3-large").sources()["model"] == "argument"
    raw = ProviderProfile(provider="openai", model="m", pool_size=2).sources()
    assert (raw["pool_size"], raw["retry.max_retries"]) == ("argument", "default")
    assert set(sources) == set(raw) == LEAVES  # every leaf, nested policies expanded


def test_explain_shows_every_value_and_loads_back() -> None:
    """explain() is commented TOML of every effective value that loads to an equal profile."""
    profile = profiles.azure(retry={"max_retries": 6})
    text = profile.explain()
    lines = [line for line in text.splitlines() if " = " in line]
    assert len(lines) == len(LEAVES)
    assert "max_retries = 6 " in text and "initial_delay = 2.0 " in text
    by_name = {line.split(" = ")[0]: line for line in lines}
    assert by_name["max_retries"].endswith("# argument")
    assert by_name["initial_delay"].endswith("# provider default")
    assert ProviderProfile.from_toml(text) == profile


def test_equality_ignores_where_values_came_from() -> None:
    """Two profiles with the same values are equal whatever layers built them."""
    assert profiles.openai(pool_size=3) == ProviderProfile.from_dict(
        profiles.openai(pool_size=3).to_dict()
    )
    assert profiles.openai(pool_size=3) != profiles.openai()


# -- extra_body holds any JSON value (issue 15.5) ---------------------------------------------
_NESTED = {
    "options": {"num_ctx": 8192, "temperature": 0.5, "stop": ["\n\n", "###"], "numa": False},
    "keep_alive": "5m",
    "truncate": True,
    "tags": [1, "two", {"three": [3.0]}],
}


def test_extra_body_accepts_nested_json() -> None:
    """Nested objects and lists (Ollama's options) are kept exactly, types included."""
    profile = profiles.ollama(extra_body=_NESTED)
    assert profile.extra_body == _NESTED
    assert profile.extra_body["options"]["numa"] is False  # type: ignore[index]


def test_nested_extra_body_round_trips_through_dict_toml_and_env() -> None:
    """A nested extra_body survives dict, TOML and environment round trips unchanged."""
    profile = profiles.ollama(extra_body=_NESTED)
    assert ProviderProfile.from_dict(profile.to_dict()) == profile
    assert ProviderProfile.from_toml(profile.to_toml()) == profile
    assert ProviderProfile.from_env(profile.to_env()) == profile
    toml_text = "[extra_body]\noptions = { num_ctx = 4096 }\n"
    loaded = ProviderProfile.from_toml('provider = "ollama"\nmodel = "m"\n' + toml_text)
    assert loaded.extra_body == {"options": {"num_ctx": 4096}}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"options": {"seed": None}}, "null"),
        ({"options": [float("nan")]}, "finite"),
        ({"x": float("inf")}, "finite"),
        ({"options": {1: "a"}}, "extra_body"),
    ],
)
def test_extra_body_refuses_what_json_or_toml_cannot_hold(
    body: dict[str, object], words: str
) -> None:
    """null (no TOML form), NaN/infinity (not JSON) and non-string keys are refused by name."""
    with pytest.raises(ConfigurationError, match="extra_body") as info:
        profiles.ollama(extra_body=body)
    assert words in str(info.value)
