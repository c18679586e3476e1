"""`embedguard profiles ... --effective`: every effective value and where it came from."""

from pathlib import Path

import pytest

from embedguard import ProviderProfile, profiles
from embedguard.cli import main


def _lines(text: str) -> dict[str, str]:
    """The first line setting each name (top-level fields come before the tables)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if " = " in line:
            out.setdefault(line.split(" = ")[0], line)
    return out


def test_effective_shows_provider_defaults_and_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A built-in profile shows every value as a provider default, --model as an argument."""
    assert main(["profiles", "mistral", "--model", "codestral-embed", "--effective"]) == 0
    out = capsys.readouterr().out
    lines = _lines(out)
    assert lines["model"].endswith("# argument") and "codestral-embed" in lines["model"]
    assert "16384" in lines["max_tokens_per_request"]
    assert lines["max_tokens_per_request"].endswith("# provider default")
    assert ProviderProfile.from_toml(out) == profiles.mistral("codestral-embed")


def test_effective_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Values from --profile-file are labelled with the file; the rest are provider defaults."""
    path = tmp_path / "prod.toml"
    path.write_text('provider = "azure"\n[retry]\nmax_retries = 6\n', encoding="utf-8")
    assert main(["profiles", "--profile-file", str(path), "--effective"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert lines["max_retries"].endswith(f"# file {path}") and " 6 " in lines["max_retries"]
    assert lines["initial_delay"].endswith("# provider default") and "2.0" in lines["initial_delay"]


def test_effective_without_a_profile_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--effective alone names what it needs, with the usage exit status."""
    assert main(["profiles", "--effective"]) == 2
    assert "--effective needs a profile NAME" in capsys.readouterr().err


def test_profile_as_plain_toml_is_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --effective, a profile is still printed as plain TOML."""
    assert main(["profiles", "azure"]) == 0
    out = capsys.readouterr().out
    assert "# " not in out and ProviderProfile.from_toml(out) == profiles.azure()
