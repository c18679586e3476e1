"""Configuration: frozen policies, built-in profiles, round trips and typed errors."""

from pathlib import Path

import pytest

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
    assert (o.breaker.failure_threshold, o.breaker.success_threshold) == (5, 2)
    assert (o.breaker.open_timeout, o.breaker.half_open_max_attempts) == (30.0, 3)
    assert (o.batching.max_tokens_per_request, o.batching.max_tokens_per_input) == (300_000, 8191)
    assert (m.timeouts.request, m.retry.max_retries, m.retry.initial_delay) == (30.0, 3, 0.5)
    assert (m.batching.max_inputs, m.compression.threshold_bytes, m.pool_size) == (128, 512, 10)
    assert (m.breaker.failure_threshold, m.breaker.success_threshold) == (3, 2)
    assert (m.breaker.open_timeout, m.breaker.half_open_max_attempts) == (20.0, 2)
    assert (a.timeouts.request, a.retry.max_retries, a.retry.initial_delay) == (90.0, 4, 2.0)
    assert (a.batching.max_inputs, a.pool_size) == (2048, 15)
    assert (a.breaker.failure_threshold, a.breaker.success_threshold) == (5, 3)
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
