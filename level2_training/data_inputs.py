"""What a training run records of its data: each input file with what validation made of it,
and one digest over all of them. Light (no MLflow, no scikit-learn): the Kubeflow pipeline's
data components import it, each in a process of its own."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from shared.data.validate import ValidationReport


@dataclass(frozen=True)
class DataInput:
    """One data file (or generated month) a run used, with what validation made of it."""

    role: str  # "train", "val" or "test"
    source: str
    sha256: str
    report: ValidationReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "source": self.source,
            "sha256": self.sha256,
            "month": self.report.month,
            "rows_in": self.report.rows_in,
            "rows_out": self.report.rows_out,
            "dropped": self.report.dropped,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataInput:
        """The inverse of :meth:`to_dict` (a Kubeflow step reads its inputs' records back)."""
        report = ValidationReport(
            data["source"], data["rows_in"], data["rows_out"], dict(data["dropped"]), data["month"]
        )
        return cls(data["role"], data["source"], data["sha256"], report)


def data_digest(inputs: list[DataInput]) -> dict[str, Any]:
    """Files, row counts and one content hash over all of them (order and role included)."""
    content = hashlib.sha256()
    for item in inputs:
        content.update(f"{item.role}:{item.sha256}\n".encode())
    return {"content_hash": content.hexdigest(), "inputs": [i.to_dict() for i in inputs]}
