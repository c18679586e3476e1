"""The base of every configuration object: immutable, validated, value-equal, compact repr."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from .errors import ConfigurationError

__all__ = ["Frozen", "configuration_error", "mapping"]


def configuration_error(exc: ValidationError) -> ConfigurationError:
    """The first validation error as a :class:`ConfigurationError` naming the dotted field."""
    err = exc.errors()[0]
    parts = [str(part) for part in err["loc"] if not isinstance(part, int)]
    message = err["msg"].removeprefix("Value error, ")
    inner = err.get("ctx", {}).get("error")
    if isinstance(inner, ConfigurationError):  # a nested policy built from a dict
        message = inner.reason
        parts += [inner.field] if inner.field else []
    return ConfigurationError(message, field=".".join(parts) or None)


def mapping(data: Any) -> dict[str, Any]:
    """``data`` as a dict, or a ConfigurationError when it is not a mapping."""
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"expected a mapping, got {type(data).__name__}")
    return dict(data)


@functools.cache
def _nullable(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if info.annotation is not None and type(None) in getattr(info.annotation, "__args__", ())
    )


class Frozen(BaseModel):
    """Immutable, validated, value-equal; raises ConfigurationError instead of ValidationError."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise configuration_error(exc) from None

    @model_validator(mode="before")
    @classmethod
    def _none_spelled_out(cls, data: Any) -> Any:
        # TOML and environment variables have no null: the string "none" stands for None.
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, str) and value.lower() == "none" and key in _nullable(cls):
                    data[key] = None
        return data

    def __repr_args__(self) -> Any:
        # Compact repr: show only the fields that differ from their default.
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if info.is_required() or value != info.get_default(call_default_factory=True):
                yield name, value

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a plain mapping (as produced by :meth:`to_dict`)."""
        return cls._validated(mapping(data))

    @classmethod
    def _validated(cls, data: dict[str, Any]) -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise configuration_error(exc) from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (nested policies as dicts)."""
        return self.model_dump(mode="json")

    def evolve(self, **changes: Any) -> Self:
        """Return a validated copy with ``changes`` applied."""
        merged = self.to_dict()
        for key, value in changes.items():
            merged[key] = value.to_dict() if isinstance(value, Frozen) else value
        return type(self).from_dict(merged)
