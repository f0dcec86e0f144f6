"""What every kind declares besides its spec and status: names, printer columns, root-level CEL rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

GROUP = "amlops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "amlops"


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class Rule:
    """A CEL ``x-kubernetes-validations`` entry; ``message`` says what to do instead."""

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None

    def to_crd(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class ScaleSubresource:
    spec_replicas_path: str
    status_replicas_path: str
    label_selector_path: str | None = None


@dataclass(frozen=True)
class Names:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    categories: tuple[str, ...] = (CATEGORY,)


@dataclass(frozen=True)
class Definition:
    names: Names
    description: str
    printer_columns: tuple[PrinterColumn, ...] = ()
    rules: tuple[Rule, ...] = ()  # root-level: may read metadata.name
    scale: ScaleSubresource | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class CustomResource(BaseModel):
    """A kind: its spec and status models plus the CRD's ``definition``."""

    definition: ClassVar[Definition]
    spec_model: ClassVar[type[BaseModel]]
    status_model: ClassVar[type[BaseModel]]

    @classmethod
    def plural(cls) -> str:
        return cls.definition.names.plural

    @classmethod
    def kind(cls) -> str:
        return cls.definition.names.kind


READY_COLUMN = PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition")
REASON_COLUMN = PrinterColumn(
    "Reason", '.status.conditions[?(@.type=="Ready")].reason', description="Why (not) Ready", priority=1
)
AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", type="date")
