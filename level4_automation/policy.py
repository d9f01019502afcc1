"""The level-4 policy: when to alert, retrain, deploy a canary, promote or roll back.

One YAML file, validated strictly (unknown keys are errors: a typo must not silently leave a
default in force). :func:`load_policy` turns every problem into one :class:`ConfigError` that
names the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import ConfigError

DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriftPolicy(_Strict):
    #: input features compared with the champion's training data
    columns: list[str] = ["PULocationID", "DOLocationID", "trip_distance", "pickup_hour"]
    #: per-column drift score above which a column counts as drifted (Evidently's default
    #: methods: normalised Wasserstein for numbers, Jensen-Shannon for zones)
    column_threshold: float = Field(0.1, gt=0, le=1)
    #: share of drifted columns that makes the window's data drifted
    drift_share: float = Field(0.5, gt=0, le=1)
    #: drift score of the predictions above which the predictions count as drifted
    prediction_threshold: float = Field(0.1, gt=0, le=1)
    #: rows compared (a seeded random sample of larger windows): drift scores are stable
    #: long before this, and it bounds the monitoring time
    max_rows: int = Field(100_000, ge=1000)
    #: without enough labels, drift alone may trigger retraining only if this is true
    retrain_without_labels: bool = False


class QualityPolicy(_Strict):
    #: fewest labelled rows for an error measurement to count
    min_labels: int = Field(500, ge=10)
    #: observed RMSE above the champion's own validation RMSE by this share is degradation
    max_rmse_increase: float = Field(0.15, gt=0)


class DataQualityPolicy(_Strict):
    #: share of a window's rides that may be refused or invalid before it is a data incident
    max_invalid_share: float = Field(0.05, ge=0, le=1)


class TriggerPolicy(_Strict):
    #: fewest predictions in a window to judge it at all
    min_rows: int = Field(1000, ge=1)
    #: windows in a row that must show the problem before retraining
    consecutive_windows: int = Field(1, ge=1)
    #: windows after a promotion or rollback during which no new retraining starts
    cooldown_windows: int = Field(1, ge=0)
    #: retrain at least this often (in windows), degraded or not, when labels allow: a model
    #: trained across a shift, on half old and half new traffic, may stay inside the error
    #: limit and never be replaced otherwise. None: only degradation retrains
    refresh_windows: int | None = Field(None, ge=1)


class RetrainPolicy(_Strict):
    #: how many recent windows of labelled traffic to train on (the newest included)
    windows: int = Field(1, ge=1)
    #: the newest part of the newest window held out to compare candidate and champion
    holdout_share: float = Field(0.2, gt=0, lt=1)
    families: list[str] = ["hgb"]
    trials: int = Field(3, ge=1)
    seed: int = 0


class GatePolicy(_Strict):
    #: the candidate passes if its holdout RMSE is below the champion's times (1 + margin);
    #: 0 means it must be strictly better
    non_inferiority_margin: float = Field(0.0, ge=0, lt=1)


class CanaryPolicy(_Strict):
    share: float = Field(20.0, gt=0, le=100)
    mode: Literal["ab", "shadow"] = "ab"
    #: "sequential": an always-valid confidence sequence, read at every cycle (a verdict the
    #: moment it is shown); "welch": the fixed-horizon test, which repeated looks inflate
    test: Literal["sequential", "welch"] = "sequential"
    #: labelled predictions per variant before the A/B test may decide
    min_samples: int = Field(300, ge=10)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    #: sequential: promote once the canary's MSE is shown below blue's x (1 + margin)
    margin: float = Field(0.0, ge=0, lt=1)
    #: sequential: the labels at which the sequence is tightest (level3_deployment/sequential.py)
    tuned_for_labels: int = Field(20_000, ge=100)
    #: windows to wait for a verdict before ``on_inconclusive`` applies
    max_windows: int = Field(2, ge=1)
    #: an undecided canary whose own RMSE in a window is this share above its validation RMSE
    #: is abandoned: the traffic moved on since it was trained, so it is rolled back and the
    #: next cycle retrains. Wider than quality.max_rmse_increase: a canary's validation RMSE
    #: comes from a small holdout, and seasons move it too
    abandon_rmse_increase: float = Field(0.3, gt=0)
    on_inconclusive: Literal["promote", "rollback"] = "rollback"


class AlertPolicy(_Strict):
    webhook_url: str | None = None
    timeout_s: float = Field(5.0, gt=0)


class Policy(_Strict):
    drift: DriftPolicy = DriftPolicy()
    quality: QualityPolicy = QualityPolicy()
    data_quality: DataQualityPolicy = DataQualityPolicy()
    trigger: TriggerPolicy = TriggerPolicy()
    retrain: RetrainPolicy = RetrainPolicy()
    gate: GatePolicy = GatePolicy()
    canary: CanaryPolicy = CanaryPolicy()
    alerts: AlertPolicy = AlertPolicy()

    @model_validator(mode="after")
    def _families_known(self) -> Policy:
        from shared.models import FAMILIES

        unknown = [f for f in self.retrain.families if f not in FAMILIES]
        if unknown or not self.retrain.families:
            raise ValueError(
                f"retrain.families: unknown {unknown or 'empty list'}; choose from "
                f"{', '.join(FAMILIES)}"
            )
        return self


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling)"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}:{where}: not valid YAML ({problem})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def load_policy(path: Path | None = None) -> Policy:
    path = path or DEFAULT_POLICY
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the policy file ({exc.strerror})") from None
    return parse_policy(text, str(path))


def windows_scaled(policy: Policy, factor: int) -> Policy:
    """The policy for windows ``factor`` times shorter, with the same spans of time: the
    training data (``retrain.windows``) and the canary's time to a verdict
    (``canary.max_windows``) keep their length in time, and so does the refresh interval
    (``trigger.refresh_windows``). Streaks and the cooldown stay counted in windows: shorter
    windows should let the loop react sooner, not later."""
    retrain = policy.retrain.model_copy(update={"windows": policy.retrain.windows * factor})
    canary = policy.canary.model_copy(update={"max_windows": policy.canary.max_windows * factor})
    refresh = policy.trigger.refresh_windows
    trigger = policy.trigger.model_copy(
        update={"refresh_windows": None if refresh is None else refresh * factor}
    )
    return policy.model_copy(update={"retrain": retrain, "canary": canary, "trigger": trigger})


def policy_yaml(policy: Policy) -> str:
    """The policy as a file :func:`load_policy` reads back to the same policy."""
    return yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False)
