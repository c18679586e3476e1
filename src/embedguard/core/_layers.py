"""Layered settings: what a layer (file, environment, arguments) changes; where values came from.

A profile is built from a base (a provider's built-in profile) plus layers. A layer names some
fields; for a nested policy it may name only some of the policy's fields, and the others keep
the value they had. Every leaf (``pool_size``, ``retry.max_retries``...) remembers the label of
the layer that set it last; a leaf no layer set is a provider default.

Pure functions over plain dicts; :mod:`embedguard.core.config` wires them to the models.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel

__all__ = [
    "Label",
    "env_layer",
    "env_vars",
    "fields_set",
    "leaves",
    "nested",
    "overlay",
    "render_explanation",
    "timeouts_from_number",
    "toml_text",
    "toml_value",
]

Label = Callable[[str], str]
"""Maps a dotted field name (``retry.max_retries``) to where its value came from."""


def timeouts_from_number(value: Any) -> dict[str, float] | None:
    """A single number of seconds as both timeouts (connect at most 5 s); ``None`` otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"request": float(value), "connect": min(float(value), 5.0)}
    return None


def _partial(name: str, value: Any) -> dict[str, Any] | None:
    """The fields a layer names for the policy ``name``, or ``None`` if it replaces the value."""
    if isinstance(value, BaseModel):
        # A policy object names the fields it was built with: RetryPolicy(max_retries=6)
        # changes max_retries only; policy.evolve(...) and from_dict(...) name every field.
        named: dict[str, Any] = value.model_dump(mode="json", include=value.model_fields_set)
        return named
    if isinstance(value, Mapping):
        return dict(value)
    if name == "timeouts":
        return timeouts_from_number(value)
    return None


_WINDOW = frozenset({"window_size", "minimum_calls", "failure_rate_threshold"})


def overlay(
    values: dict[str, Any],
    origins: dict[str, str],
    layer: Mapping[str, Any],
    label: Label,
    policies: frozenset[str],
) -> None:
    """Apply ``layer`` to ``values`` (a full ``to_dict()``) in place, labelling what it set.

    A policy (a name in ``policies``) given as a mapping, a policy object or (``timeouts``) a
    number changes only the fields it names; any other value replaces the field whole
    (``extra_body`` included: it is one value, not a policy).
    """
    for key, value in layer.items():
        part = _partial(key, value) if key in policies else None
        current = values.get(key)
        if part is not None and isinstance(current, dict):
            if "failure_threshold" in part:  # the breaker's alias stands for its window fields
                current = {k: v for k, v in current.items() if k not in _WINDOW}
            values[key] = {**current, **part}
            for sub in part:
                origins[f"{key}.{sub}"] = label(f"{key}.{sub}")
        else:
            values[key] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
            for path in [p for p in origins if p.startswith(f"{key}.")]:
                del origins[path]
            if key in policies:  # a whole policy replaced: every field of it comes from here
                origins.update({f"{key}.{sub}": label(key) for sub in _keys(values[key])})
            else:
                origins[key] = label(key)


def _keys(value: Any) -> list[str]:
    return list(value) if isinstance(value, Mapping) else []


def leaves(model: BaseModel) -> Iterator[tuple[str, Any]]:
    """Every ``(dotted name, value)`` of a model, one level of nested policies expanded."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            for sub in type(value).model_fields:
                yield f"{name}.{sub}", getattr(value, sub)
        else:
            yield name, value


def nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"retry.max_retries": 6}`` -> ``{"retry": {"max_retries": 6}}``."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        head, _, sub = path.partition(".")
        if sub:
            out.setdefault(head, {})[sub] = value
        else:
            out[head] = value
    return out


def fields_set(model: BaseModel) -> dict[str, str]:
    """The origins of a model built field by field: the fields it was given are arguments."""
    out: dict[str, str] = {}
    for name in model.model_fields_set:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out.update({f"{name}.{sub}": "argument" for sub in value.model_fields_set})
        else:
            out[name] = "argument"
    return out


# -- text forms: TOML and environment variables -------------------------------------------------
def toml_text(model: BaseModel, implied: Mapping[str, Any]) -> str:
    """``model`` as TOML: scalars first, then one table per policy (and for ``extra_body``).

    A ``None`` is left out when loading would give ``None`` anyway (``implied`` holds what the
    base would give for the top-level fields); any other ``None`` is written as ``"none"``.
    """
    lines: list[str] = []
    tables: list[str] = []
    for key, value in _toml_items(model, implied):
        if isinstance(value, BaseModel):
            tables.append(f"\n[{key}]")
            tables.extend(f"{k} = {toml_value(v)}" for k, v in _toml_items(value, {}))
        elif isinstance(value, dict):
            tables.append(f"\n[{key}]")
            tables.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        else:
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


def _toml_items(model: BaseModel, implied: Mapping[str, Any]) -> list[tuple[str, Any]]:
    items = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        default = implied[name] if name in implied else info.get_default()
        if value is None and default is None and not info.is_required():
            continue
        items.append((name, value))
    return items


def env_layer(environ: Mapping[str, str], prefix: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The layer the ``prefix`` variables describe, and each dotted name's variable.

    ``PREFIX_RETRY__MAX_RETRIES`` sets ``retry.max_retries``; ``PREFIX_EXTRA_BODY`` is JSON.
    """
    data: dict[str, Any] = {}
    names: dict[str, str] = {}
    for key, raw in environ.items():
        if not key.startswith(prefix):
            continue
        path = key[len(prefix) :].lower().split("__")
        value: Any = raw
        if path == ["extra_body"]:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                from .errors import ConfigurationError

                raise ConfigurationError(f"not JSON: {exc}", field="extra_body") from None
        target = data
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
        names[".".join(path)] = key
    return data, names


def env_vars(values: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """A ``to_dict()`` as ``prefix`` variables (the inverse of :func:`env_layer`)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if key == "extra_body":
            if value:
                out[f"{prefix}EXTRA_BODY"] = json.dumps(value)
        elif isinstance(value, dict):
            for sub, subvalue in value.items():
                out[f"{prefix}{key}__{sub}".upper()] = env_value(subvalue)
        else:
            out[f"{prefix}{key}".upper()] = env_value(value)
    return out


def toml_value(value: Any) -> str:
    """One value in TOML syntax; ``None`` is written as the string ``"none"``."""
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        inner = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    from .errors import ConfigurationError

    raise ConfigurationError(f"cannot write {type(value).__name__} to TOML")


def toml_key(key: str) -> str:
    """A bare TOML key when it can be one, else a quoted one (``"top-k"``, ``"a.b"``)."""
    if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key):
        return key
    return json.dumps(key)


def env_value(value: Any) -> str:
    """One value as an environment variable's text; ``None`` is ``none``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_explanation(title: str, rows: list[tuple[str, Any, str]]) -> str:
    """TOML of every ``(dotted name, value, source)``, each line commented with its source.

    Top-level values come first, then one table per policy, so the text loads back as TOML.
    """
    top = [(name, value, src) for name, value, src in rows if "." not in name]
    tables: dict[str, list[tuple[str, Any, str]]] = {}
    for name, value, src in rows:
        if "." in name:
            table, sub = name.split(".", 1)
            tables.setdefault(table, []).append((sub, value, src))
    body = [(f"{k} = {toml_value(v)}", src) for k, v, src in top]
    for table, items in tables.items():
        body.append(("", ""))
        body.append((f"[{table}]", ""))
        body.extend((f"{k} = {toml_value(v)}", src) for k, v, src in items)
    width = max(len(line) for line, _ in body)
    lines = [f"# {title}"]
    lines += [f"{line.ljust(width)}  # {src}" if src else line for line, src in body]
    return "\n".join(lines) + "\n"
