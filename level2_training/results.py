"""What a level-2 training run comes to, as types: the training flow returns a
:class:`TrainingResult`, level 4's loop and replay read it, and the CLI's ``--json`` output and
the run's MLflow artifact are its :meth:`TrainingResult.to_dict` (one place, one shape).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Baseline:
    """The baseline family's score, which every other is measured against."""

    family: str
    val_rmse: float
    val_mae: float


@dataclass(frozen=True)
class FamilySearch:
    """One family's best trial."""

    val_rmse: float
    val_mae: float
    params: dict[str, Any]
    run_id: str


@dataclass(frozen=True)
class BestModel:
    """The run's winner: the model that was registered."""

    family: str
    params: dict[str, Any]
    val_rmse: float
    val_mae: float
    run_id: str
    model_uri: str


@dataclass(frozen=True)
class PreviousChampion:
    """The champion before this run (none on a first run), and its validation RMSE."""

    version: int | None
    val_rmse: float | None


@dataclass(frozen=True)
class Registration:
    """The version the run registered, and the champion decision about it."""

    name: str
    version: int
    aliases: list[str]
    promoted: bool
    decision: str
    champion_version: int | None
    previous_champion: PreviousChampion


@dataclass(frozen=True)
class HeldOut:
    """The chosen model and the baseline scored on a held-back test month, after the choice:
    the figure to publish, since the validation month is the one the model was selected on."""

    source: str
    month: str | None
    rows: int
    baseline_rmse: float
    best_rmse: float

    @property
    def improvement_vs_baseline(self) -> float:
        return 1.0 - self.best_rmse / self.baseline_rmse


@dataclass(frozen=True)
class FlowRunRef:
    """The Prefect flow run that trained, when a worker did."""

    id: str
    name: str


@dataclass(frozen=True)
class TrainingResult:
    mlflow_run_id: str
    experiment_id: str
    tracking_uri: str
    baseline: Baseline
    best: BestModel
    improvement_vs_baseline: float
    families: dict[str, FamilySearch]
    registered: Registration
    #: the data digest (tracking.data_digest) and the code's git state (tracking.git_info)
    data: dict[str, Any]
    git: dict[str, str]
    seconds: float
    flow_run: FlowRunRef | None = field(default=None)
    #: the held-back test month's scores, when the run had one
    test: HeldOut | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON: the CLI's ``--json`` and the run's MLflow artifact."""
        out = asdict(self)
        if self.flow_run is None:
            del out["flow_run"]
        if self.test is None:
            del out["test"]
        else:
            out["test"]["improvement_vs_baseline"] = self.test.improvement_vs_baseline
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingResult:
        """Back from :meth:`to_dict` (a worker's run, read from its MLflow artifact)."""
        registered = dict(data["registered"])
        registered["previous_champion"] = PreviousChampion(**registered["previous_champion"])
        flow_run = data.get("flow_run")
        test = dict(data.get("test") or {})
        test.pop("improvement_vs_baseline", None)
        return cls(
            mlflow_run_id=data["mlflow_run_id"],
            experiment_id=data["experiment_id"],
            tracking_uri=data["tracking_uri"],
            baseline=Baseline(**data["baseline"]),
            best=BestModel(**data["best"]),
            improvement_vs_baseline=data["improvement_vs_baseline"],
            families={f: FamilySearch(**r) for f, r in data["families"].items()},
            registered=Registration(**registered),
            data=data["data"],
            git=data["git"],
            seconds=data["seconds"],
            flow_run=FlowRunRef(**flow_run) if flow_run else None,
            test=HeldOut(**test) if test else None,
        )
