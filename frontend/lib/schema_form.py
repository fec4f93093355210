"""Forms generated from a JSON schema (method hyperparameters, training settings, options).

``validate_value`` is the pure check (bounds, enums, types) that explains a bad value before
anything is submitted; ``render_form`` draws one widget per property with its default and
returns the parsed values and the messages of invalid fields. The server stays the authority:
whatever it rejects anyway is shown from its response.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st

__all__ = ["Field", "fields", "format_default", "parse_text", "render_form", "validate_value"]


@dataclass(frozen=True)
class Field:
    """One property of an object schema, with ``anyOf [T, null]`` unwrapped."""

    name: str
    kind: str
    title: str
    description: str
    default: Any
    optional: bool
    spec: Mapping[str, Any]


def _resolve(spec: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = spec.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return root.get("$defs", {}).get(ref.split("/")[-1], spec)
    return spec


def fields(schema: Mapping[str, Any]) -> list[Field]:
    """The properties of an object schema in declaration order."""
    out = []
    for name, raw in (schema.get("properties") or {}).items():
        spec = _resolve(raw, schema)
        optional = False
        if "anyOf" in spec:
            options = [_resolve(o, schema) for o in spec["anyOf"]]
            non_null = [o for o in options if o.get("type") != "null"]
            optional = len(non_null) < len(options)
            base = dict(non_null[0]) if len(non_null) == 1 else {"type": "json"}
            merged = {**{k: v for k, v in spec.items() if k != "anyOf"}, **base}
            spec = merged
        kind = "enum" if "enum" in spec else str(spec.get("type", "json"))
        out.append(
            Field(
                name=name,
                kind=kind,
                title=name,
                description=str(raw.get("description") or spec.get("description") or ""),
                default=raw.get("default", spec.get("default")),
                optional=optional,
                spec=spec,
            )
        )
    return out


def format_default(value: Any) -> str:
    """A default as the text a user would type."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value)


def parse_text(text: str, field: Field) -> tuple[Any, str | None]:
    """Parse typed text for ``field``: (value, None) or (None, readable error)."""
    text = text.strip()
    if text == "":
        if field.optional:
            return None, None
        return None, "a value is required"
    if field.kind == "integer":
        try:
            number = float(text)
        except ValueError:
            return None, f"{text!r} is not a whole number"
        if not math.isfinite(number) or number != int(number):
            return None, f"{text!r} is not a whole number"
        return int(number), None
    if field.kind == "number":
        try:
            number = float(text)
        except ValueError:
            return None, f"{text!r} is not a number"
        return number, None
    if field.kind in ("array", "object", "json"):
        try:
            return json.loads(text), None
        except json.JSONDecodeError as exc:
            return None, f"not valid JSON ({exc.msg})"
    return text, None


def validate_value(value: Any, field: Field) -> str | None:
    """Why ``value`` breaks the field's schema (bounds, enum, length, pattern), or ``None``."""
    spec = field.spec
    if value is None:
        return None if field.optional else "a value is required"
    if field.kind == "enum":
        allowed = list(spec.get("enum", []))
        return None if value in allowed else f"must be one of {', '.join(map(str, allowed))}"
    if field.kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        if not math.isfinite(float(value)):
            return "must be a finite number"
        if field.kind == "integer" and float(value) != int(value):
            return "must be a whole number"
        checks = (
            ("minimum", lambda v, b: v >= b, "≥"),
            ("exclusiveMinimum", lambda v, b: v > b, ">"),
            ("maximum", lambda v, b: v <= b, "≤"),
            ("exclusiveMaximum", lambda v, b: v < b, "<"),
        )
        for key, ok, symbol in checks:
            bound = spec.get(key)
            if (
                isinstance(bound, int | float)
                and not isinstance(bound, bool)
                and not ok(value, bound)
            ):
                return f"must be {symbol} {format_default(bound)}"
    if field.kind == "string" and isinstance(value, str):
        if "minLength" in spec and len(value) < int(spec["minLength"]):
            return f"needs at least {spec['minLength']} characters"
        if "maxLength" in spec and len(value) > int(spec["maxLength"]):
            return f"allows at most {spec['maxLength']} characters"
        if "pattern" in spec and not re.search(str(spec["pattern"]), value):
            return f"must match the pattern {spec['pattern']}"
    return None


def _help(field: Field) -> str:
    parts = [field.description] if field.description else []
    parts.append(f"default: {format_default(field.default) or 'none'}")
    return " — ".join(parts)


def _widget(field: Field, key: str, default: Any) -> tuple[Any, str | None]:
    label = field.title
    if field.kind == "enum":
        options = list(field.spec.get("enum", []))
        index = options.index(default) if default in options else 0
        return st.selectbox(label, options, index=index, key=key, help=_help(field)), None
    if field.kind == "boolean":
        return st.checkbox(label, value=bool(default), key=key, help=_help(field)), None
    text = st.text_input(label, value=format_default(default), key=key, help=_help(field))
    return parse_text(text, field)


def render_form(
    schema: Mapping[str, Any],
    *,
    key: str,
    defaults: Mapping[str, Any] | None = None,
    columns: int = 2,
    only: set[str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Draw the schema's fields; return (values, errors by field title).

    ``defaults`` override the schema's own defaults (e.g. a problem's suggested training
    settings). Widget keys are ``{key}.{name}``, so a different ``key`` starts a fresh form.
    """
    defaults = defaults or {}
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    shown = [f for f in fields(schema) if only is None or f.name in only]
    if not shown:
        st.caption("Nothing to set here.")
        return values, errors
    cols = st.columns(min(columns, len(shown)))
    for i, field in enumerate(shown):
        with cols[i % len(cols)]:
            default = defaults.get(field.name, field.default)
            value, error = _widget(field, f"{key}.{field.name}", default)
            error = error or validate_value(value, field)
            if error:
                errors[field.title] = error
                st.caption(f":red[{field.title}: {error}]")
            else:
                values[field.name] = value
    return values, errors
