"""Pydantic JSON Schema → structural schema: each rewrite rule, case by case."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from amlops.api.schema import structural_schema

pytestmark = pytest.mark.unit


class Inner(BaseModel):
    """Inner docs."""

    x: int = Field(default=1, ge=0)


class Sample(BaseModel):
    required: str
    optional: str | None = None
    ref: Inner
    optional_ref: Inner | None = Field(default=None, description="outer wins")
    choice: Literal["A", "B"] = "A"
    single: Literal["Only"] = "Only"
    labels: dict[str, str] = Field(default_factory=dict)
    items: list[Inner] = Field(default_factory=list)


@dataclass(frozen=True)
class Case:
    reason: str
    path: tuple[str, ...]
    expected: dict[str, Any]


CASES = [
    Case("a required string stays a required string", ("required",), {"type": "string"}),
    Case("Optional[str] collapses to str, null default dropped", ("optional",), {"type": "string"}),
    Case(
        "a $ref is inlined with the model docstring",
        ("ref",),
        {
            "type": "object",
            "description": "Inner docs.",
            "properties": {"x": {"type": "integer", "minimum": 0, "default": 1}},
        },
    ),
    Case(
        "Optional[Model] inlines the model and the field description wins",
        ("optional_ref",),
        {
            "type": "object",
            "description": "outer wins",
            "properties": {"x": {"type": "integer", "minimum": 0, "default": 1}},
        },
    ),
    Case(
        "Literal becomes a typed enum with its default",
        ("choice",),
        {"type": "string", "enum": ["A", "B"], "default": "A"},
    ),
    Case(
        "a one-value Literal (const) becomes an enum",
        ("single",),
        {"type": "string", "enum": ["Only"], "default": "Only"},
    ),
    Case(
        "dict[str, str] is a string map",
        ("labels",),
        {"type": "object", "additionalProperties": {"type": "string"}},
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.reason) for c in CASES])
def test_structural_schema(case: Case) -> None:
    node: dict[str, Any] = structural_schema(Sample)
    for part in case.path:
        node = node["properties"][part]
    assert node == case.expected, case.reason


def test_no_ref_anyof_or_title_survives() -> None:
    text = repr(structural_schema(Sample))
    for forbidden in ("$ref", "anyOf", "'title'", "$defs", "const"):
        assert forbidden not in text


def test_required_lists_only_fields_without_defaults() -> None:
    assert structural_schema(Sample)["required"] == ["required", "ref"]


def test_a_real_union_is_refused() -> None:
    class Bad(BaseModel):
        value: int | str

    with pytest.raises(ValueError, match="union"):
        structural_schema(Bad)
