"""The level-3 admin API (bearer token): deploy, split, promote, roll back, state, A/B report.

Every change is validated whole before any state moves: the request's fields first, then the
compare-and-swap of a new generation, then the registry's history (``AliasHooks``). A registry
that cannot record the event no longer turns a change that happened into a reported failure:
the answer says the change was made and what the registry said.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request

from level3_deployment import state as st
from level3_deployment.abstats import SequentialSettings, ab_report, sequential_report
from level3_deployment.prediction_log import PredictionLog
from level3_deployment.routing import Mode, Variant
from level3_deployment.sequential import TUNED_FOR
from level3_deployment.slots import SlotManager, UnknownVersion
from shared.data.validate import ValidationBounds
from shared.serving import FieldError, RequestValidationError
from shared.web import json_object, require_bearer

logger = logging.getLogger(__name__)

#: a reason is a sentence for the history, well inside MLflow's tag limit
MAX_REASON_CHARS = 500
MAX_VERSION = 2**31 - 1


@dataclass
class AliasHooks:
    """What promote/rollback do to the registry (moves recorded in the level-2 history)."""

    promote: Callable[[int, str], None]
    restore: Callable[[int, str], None]
    deployed: Callable[[int, str], None] = lambda version, reason: None
    split: Callable[[str], None] = lambda reason: None


def number(body: dict, name: str, low: float, high: float, default: float | None = None) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestValidationError([FieldError(name, f"expected a number in {low:g}..{high:g}")])
    return float(value)


def query_number(name: str, default: float, low: float, high: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise RequestValidationError([FieldError(name, f"expected a number in {low:g}..{high:g}")])
    return value


def query_integer(name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter: digits only (``300``, not ``300.5`` or ``3e2``)."""
    raw = request.args.get(name)
    if raw is None:
        return default
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else low - 1
    if not low <= value <= high:
        raise RequestValidationError([FieldError(name, f"expected an integer in {low}..{high}")])
    return value


def reason_of(body: dict) -> str | None:
    """The caller's reason: a short string, or None when none was given."""
    value = body.get("reason")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_REASON_CHARS:
        raise RequestValidationError(
            [FieldError("reason", f"expected a string of at most {MAX_REASON_CHARS} characters")]
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestValidationError(
            [FieldError("reason", "not valid Unicode text (a lone surrogate)")]
        ) from None
    return value


def mode_of(body: dict, allowed: tuple[str, ...]) -> Mode:
    value = body.get("mode", "ab")
    if not isinstance(value, str) or value not in allowed:
        raise RequestValidationError(
            [FieldError("mode", "expected " + " or ".join(repr(m) for m in allowed))]
        )
    return Mode(value)


def version_of(body: dict) -> int:
    value = body.get("version")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 2.0 is the integer 2 to JSON Schema, and so here
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise RequestValidationError(
            [FieldError("version", f"expected a model version in 1..{MAX_VERSION}")]
        )
    return value


def _recorded(answer: dict[str, Any], hook: Callable[[], None]) -> Response:
    """Record the change in the registry's history; a failure there is reported, not raised:
    the deployment has already changed, and the caller must know it did."""
    try:
        hook()
    except Exception as exc:
        logger.exception("the registry did not record a deployment change")
        answer = {**answer, "registry_error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return jsonify(answer)


@dataclass
class Admin:
    """What the admin routes act on."""

    slots: SlotManager
    log: PredictionLog
    store: st.StateStore
    aliases: AliasHooks
    bounds: ValidationBounds
    pinned_as: Variant | None = None

    def refuse_if_pinned(self) -> None:
        if self.pinned_as is not None:
            raise st.ConflictError(
                f"this service is pinned to v{self.store.current().blue} as {self.pinned_as}: "
                "the load balancer splits the traffic, so change the deployment there "
                "(Terraform: blue_version, green_version, green_weight)"
            )

    def rollback(self, given: str | None) -> Response | tuple[Response, int]:
        """Green gets no traffic; right after a promotion, the blue it replaced is back."""
        reason = given or "rollback"
        before = self.store.current()  # pinned: no previous blue (a pin starts over); refused below
        refused = self.unrestorable(before)
        if refused is not None:
            return refused
        new = self.change(lambda s: st.rollback(s, reason, _actor()))
        if before.previous_blue is None:
            return jsonify(new)
        # the registry's history says why the champion moved back
        restored = before.previous_blue
        why = f"rollback: {given}" if given else reason
        return _recorded(new, lambda: self.aliases.restore(restored, why))

    def unrestorable(self, state: st.DeploymentState) -> tuple[Response, int] | None:
        """A rollback's refusal when the blue it restores cannot be served: it is loaded and
        health-checked in this worker first, as a deploy's green is, so that a rollback never
        sends every worker to a model none of them can load (each would answer 503). None:
        nothing to restore, or ready."""
        version = state.previous_blue
        if version is None:
            return None
        try:
            self.slots.prepare(version)
        except Exception as exc:
            message = (
                f"v{version} cannot be restored, nothing changed: "
                f"{type(exc).__name__}: {str(exc)[:300]}"
            )
            return jsonify({"error": message}), 422
        return None

    def change(self, step: Callable[[st.DeploymentState], st.DeploymentState]) -> dict:
        """Write the next generation (compare-and-swap) and apply it in this worker."""
        self.refuse_if_pinned()
        current = self.store.current()
        new = self.store.write(step(current), current.generation)
        self.slots.refresh()
        return new.to_dict()

    def deploy(self, data: dict[str, Any]) -> Response | tuple[Response, int]:
        """Load, warm up and health-check a version, then route its share to it."""
        self.refuse_if_pinned()
        version = version_of(data)
        percent = number(data, "percent", 0.0, 100.0, default=10.0)
        mode = mode_of(data, ("ab", "shadow"))
        reason = reason_of(data) or f"deploy v{version} to green at {percent:g}% ({mode})"
        try:
            self.slots.prepare(version)  # before any traffic
        except UnknownVersion as exc:
            errors = [{"field": "version", "message": str(exc)}]
            return jsonify({"error": str(exc), "errors": errors}), 404
        except Exception as exc:
            message = f"v{version} cannot be deployed: {type(exc).__name__}: {str(exc)[:300]}"
            return jsonify({"error": message}), 422
        new = self.change(lambda s: st.deploy(s, version, percent, mode, reason, _actor()))
        return _recorded(new, lambda: self.aliases.deployed(version, reason))

    def ab_report(
        self, min_samples: int, confidence: float, sequential: SequentialAsk | None = None
    ) -> dict[str, Any]:
        """The A/B report of the pair deployed now, on labels in the modelled range (the
        training target's): a three-hour trip would swamp every squared error. Judged by
        Welch's test, or by the always-valid confidence sequence when ``sequential`` is given
        (paired ride by ride in shadow mode, weighted by the split's share in A/B mode)."""
        current = self.store.current()
        since = self.store.pairing_since()
        versions = {"blue": str(current.blue)}
        if current.green is not None:
            versions["green"] = str(current.green)
        label_range = (self.bounds.min_duration_min, self.bounds.max_duration_min)
        head: dict[str, Any] = {"blue": current.blue, "green": current.green, "since": since}
        head |= {"mode": str(current.mode), "label_range": label_range}
        if sequential is None:
            errors = self.log.labelled_errors(since, None, versions, label_range)
            report = ab_report(errors, min_samples=min_samples, confidence=confidence)
            return {**head, **report.to_dict()}
        paired = current.mode is Mode.SHADOW
        errors = self.log.labelled_errors(since, None, versions, label_range, paired=paired)
        share = None if paired else current.green_percent / 100
        how = SequentialSettings(
            share, confidence, sequential.margin, sequential.tuned_for, min_samples
        )
        return {**head, **sequential_report(errors, how).to_dict()}


@dataclass(frozen=True)
class SequentialAsk:
    """A request for the sequential verdict: the non-inferiority margin (relative to blue's
    MSE) and the labels the sequence is tuned for."""

    margin: float = 0.0
    tuned_for: int = TUNED_FOR


def _actor() -> str:
    return f"admin API ({request.remote_addr})"


def admin_blueprint(admin: Admin, token: str) -> Blueprint:
    routes = Blueprint("admin", __name__, url_prefix="/admin")

    @routes.before_request
    def _authorized() -> None:
        require_bearer(token, "the admin API (TAXI_MLOPS_ADMIN_TOKEN)")

    @routes.get("/state")
    def state() -> Response:
        history = [s.to_dict() for s in admin.store.history()[-20:]]
        return jsonify({"state": admin.store.current().to_dict(), "history": history})

    @routes.post("/deploy")
    def deploy() -> Response | tuple[Response, int]:
        return admin.deploy(json_object())

    @routes.post("/split")
    def split() -> Response:
        data = json_object()
        percent = number(data, "percent", 0.0, 100.0)
        mode = mode_of(data, ("ab", "shadow", "off"))
        reason = reason_of(data) or f"green share {percent:g}% ({mode})"
        new = admin.change(lambda s: st.set_split(s, percent, mode, reason, _actor()))
        return _recorded(new, lambda: admin.aliases.split(reason))

    @routes.post("/promote")
    def promote() -> Response:
        reason = reason_of(json_object()) or "promoted from green"
        new = admin.change(lambda s: st.promote(s, reason, _actor()))
        blue = int(new["blue"])
        return _recorded(new, lambda: admin.aliases.promote(blue, reason))

    @routes.post("/rollback")
    def rollback() -> Response | tuple[Response, int]:
        return admin.rollback(reason_of(json_object()))

    @routes.get("/ab-report")
    def ab() -> Response:
        min_samples = query_integer("min_samples", 200, 1, 10**9)
        confidence = query_number("confidence", 0.95, 0.5, 0.999)
        test = request.args.get("test", "welch")
        if test not in ("welch", "sequential"):
            message = "expected welch (fixed horizon) or sequential (always valid)"
            raise RequestValidationError([FieldError("test", message)])
        # checked whichever test is asked for: a bad value is never silently ignored
        margin = query_number("margin", 0.0, 0.0, 0.99)
        ask = SequentialAsk(margin, query_integer("tuned_for", TUNED_FOR, 100, 10**9))
        sequential = ask if test == "sequential" else None
        return jsonify(admin.ab_report(min_samples, confidence, sequential))

    return routes
