"""The package's public surface: one sorted __all__, every public name documented."""

import importlib
import importlib.resources
import inspect
import types

import embedguard

_SUBPACKAGES = {
    "adapters",
    "cache",
    "cli",
    "core",
    "events",
    "exporters",
    "integrations",
    "testing",
    "usage",
}


def test_all_is_sorted_and_unique() -> None:
    """__all__ is sorted and has no duplicates."""
    assert embedguard.__all__ == sorted(set(embedguard.__all__))


def test_all_matches_public_names() -> None:
    """Every public attribute is in __all__ and every __all__ entry exists."""
    for name in embedguard.__all__:  # public names load on first use
        getattr(embedguard, name)
    public = {
        name
        for name, value in vars(embedguard).items()
        if not name.startswith("_")
        and not (isinstance(value, types.ModuleType) and name in _SUBPACKAGES)
    }
    assert public == set(embedguard.__all__)


def test_every_public_name_has_a_docstring() -> None:
    """Every exported class, function and module carries its own docstring."""
    missing = [
        name
        for name in embedguard.__all__
        if not (inspect.getdoc(getattr(embedguard, name)) or "").strip()
    ]
    assert missing == []


def test_public_methods_are_documented() -> None:
    """Public methods of the main classes carry docstrings."""
    for cls in (embedguard.EmbeddingClient, embedguard.CircuitBreaker, embedguard.MetricsCollector):
        for name, member in vars(cls).items():
            if name.startswith("_") or (not callable(member) and not isinstance(member, property)):
                continue
            assert inspect.getdoc(member), f"{cls.__name__}.{name} has no docstring"


def test_package_is_typed() -> None:
    """The package ships a py.typed marker."""
    assert importlib.resources.files("embedguard").joinpath("py.typed").is_file()


def test_public_modules_export_what_they_name() -> None:
    """The public modules (events, usage, cache, exporters) export documented names, once each."""
    for name in ("events", "usage", "cache", "exporters.prometheus", "exporters.otel"):
        module = importlib.import_module(f"embedguard.{name}")
        assert len(set(module.__all__)) == len(module.__all__)
        for attr in module.__all__:
            assert (inspect.getdoc(getattr(module, attr)) or "").strip(), f"{name}.{attr}"


def test_import_embedguard_loads_nothing_heavy() -> None:
    """`import embedguard` alone loads neither the client nor numpy, pydantic or httpx."""
    import subprocess
    import sys

    code = (
        "import sys, embedguard; "
        "print(sorted(m for m in ('numpy', 'pydantic', 'httpx', 'embedguard.core.client') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
