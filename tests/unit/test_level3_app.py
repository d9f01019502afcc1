"""The level-3 app in-process: routing, logging, feedback, admin API, hot swap."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from level3_deployment import state as st
from level3_deployment.app import AliasHooks, create_app
from level3_deployment.prediction_log import PredictionLog
from level3_deployment.slots import SlotManager
from shared.data.generator import generate_month
from shared.data.schema import to_canonical
from shared.data.validate import ValidationBounds, clean_trips
from shared.features import split_xy
from shared.models import build_model, get_family
from tests.factories import ride

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FEED_TOKEN = "labels-only"
FEED = {"Authorization": f"Bearer {FEED_TOKEN}"}


@pytest.fixture(scope="module")
def models() -> dict:
    clean, _ = clean_trips(
        to_canonical(generate_month("2019-01", 5000, seed=1), "g"), ValidationBounds()
    )
    return {
        1: build_model("linear").fit(*split_xy(clean, get_family("linear").spec)),
        2: build_model("hgb").fit(*split_xy(clean, get_family("hgb").spec)),
        3: build_model("ridge").fit(*split_xy(clean, get_family("ridge").spec)),
    }


class Broken:
    def predict(self, X: object) -> list[float]:
        return [float("nan")] * 3


@pytest.fixture
def service(tmp_path: Path, models: dict):
    store = st.StateStore(tmp_path / "deployment.db")
    store.write(st.start(store.current(), 1, "boot", "test"), 0)
    loaded = {**models, 9: Broken()}
    slots = SlotManager(store, lambda v: loaded[v], poll_s=0.05)
    log = PredictionLog(tmp_path / "predictions.db")
    moves: list[tuple[str, int, str]] = []
    hooks = AliasHooks(
        lambda v, r: moves.append(("promote", v, r)), lambda v, r: moves.append(("restore", v, r))
    )
    app = create_app(slots, log, store, token=TOKEN, feedback_token=FEED_TOKEN, aliases=hooks)
    slots.refresh()
    yield app.test_client(), log, moves
    slots.stop()  # no thread may outlive the test: later tests fork()
    log.close()


def test_blue_answers_everything_before_a_deploy(service) -> None:
    client, log, _ = service
    body = client.post("/predict", json=[ride(ride_id=i) for i in range(50)]).get_json()
    assert {p["variant"] for p in body["predictions"]} == {"blue"}
    assert {p["model_version"] for p in body["predictions"]} == {"1"}
    assert log.count() == 50


def test_admin_needs_the_token(service) -> None:
    client, _, _ = service
    assert client.post("/admin/deploy", json={"version": 2}).status_code == 401
    assert (
        client.post(
            "/admin/deploy", json={"version": 2}, headers={"Authorization": "Bearer wrong"}
        ).status_code
        == 401
    )


def test_deploy_split_promote_rollback(service) -> None:
    client, log, moves = service
    response = client.post("/admin/deploy", json={"version": 2, "percent": 50}, headers=AUTH)
    assert response.status_code == 200, response.get_json()
    rides = [ride(ride_id=f"r{i}") for i in range(400)]
    first = client.post("/predict", json=rides).get_json()["predictions"]
    greens = {p["ride_id"] for p in first if p["variant"] == "green"}
    assert 140 < len(greens) < 260
    again = client.post("/predict", json=rides).get_json()["predictions"]
    assert {p["ride_id"] for p in again if p["variant"] == "green"} == greens  # sticky

    client.post("/admin/split", json={"percent": 80}, headers=AUTH)
    wider = client.post("/predict", json=rides).get_json()["predictions"]
    assert greens <= {p["ride_id"] for p in wider if p["variant"] == "green"}  # monotone

    assert client.post("/admin/promote", json={"reason": "better"}, headers=AUTH).status_code == 200
    assert moves[-1] == ("promote", 2, "better")
    after = client.post("/predict", json=rides[:10]).get_json()["predictions"]
    assert {(p["variant"], p["model_version"]) for p in after} == {("blue", "2")}

    assert client.post("/admin/rollback", headers=AUTH).status_code == 200
    assert moves[-1] == ("restore", 1, "rollback")
    back = client.post("/predict", json=rides[:10]).get_json()["predictions"]
    assert {(p["variant"], p["model_version"]) for p in back} == {("blue", "1")}
    assert log.count() == 1200 + 10 + 10


def test_a_model_failing_its_health_check_never_gets_traffic(service) -> None:
    client, _, _ = service
    response = client.post("/admin/deploy", json={"version": 9, "percent": 100}, headers=AUTH)
    assert response.status_code == 422
    assert "cannot be deployed" in response.get_json()["error"]
    body = client.post("/predict", json=[ride(ride_id=i) for i in range(20)]).get_json()
    assert {p["variant"] for p in body["predictions"]} == {"blue"}


def test_shadow_mode_answers_blue_and_logs_green(service) -> None:
    client, log, _ = service
    client.post(
        "/admin/deploy", json={"version": 3, "percent": 100, "mode": "shadow"}, headers=AUTH
    )
    body = client.post("/predict", json=[ride(ride_id=i) for i in range(30)]).get_json()
    assert {p["variant"] for p in body["predictions"]} == {"blue"}
    frame = log.frame()
    assert (frame["shadow"] == 1).sum() == 30 and set(frame[frame.shadow == 1].variant) == {"green"}


def test_feedback_and_ab_report(service) -> None:
    client, _, _ = service
    client.post("/admin/deploy", json={"version": 2, "percent": 50}, headers=AUTH)
    client.post("/predict", json=[ride(ride_id=f"f{i}") for i in range(100)])
    for i in range(100):
        assert (
            client.post(
                "/feedback", headers=FEED, json={"ride_id": f"f{i}", "duration": 12.0}
            ).status_code
            == 200
        )
    assert (
        client.post("/feedback", headers=FEED, json={"ride_id": "nope", "duration": 3}).status_code
        == 404
    )
    assert (
        client.post("/feedback", headers=FEED, json={"ride_id": "f1", "duration": -3}).status_code
        == 400
    )
    report = client.get("/admin/ab-report?min_samples=500", headers=AUTH).get_json()
    assert report["verdict"] is None and "too early" in report["reason"]
    assert report["variants"]["blue"]["n"] + report["variants"]["green"]["n"] == 100


def test_bad_requests_and_openapi(service) -> None:
    client, _, _ = service
    assert client.post("/predict", data=b"{", content_type="application/json").status_code == 400
    assert client.post("/predict", json=ride(PULocationID=0)).status_code == 400
    assert client.post("/admin/deploy", json={"version": "two"}, headers=AUTH).status_code == 400
    assert client.post("/admin/split", json={"percent": 10}, headers=AUTH).status_code == 409
    spec = client.get("/openapi.json").get_json()
    assert {"/predict", "/feedback", "/admin/deploy", "/admin/ab-report"} <= set(spec["paths"])
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'taxi_level3_requests_total{endpoint="/predict",status="400",variant="none"}' in metrics


def test_a_retried_request_is_logged_once(service) -> None:
    client, log, _ = service
    headers = {"X-Request-Id": "req-123"}
    for _ in range(3):
        assert client.post("/predict", json=ride(ride_id="r"), headers=headers).status_code == 200
    assert log.count() == 1
    client.post("/predict", json=ride(ride_id="r"), headers={"X-Request-Id": "req-124"})
    assert log.count() == 2


def test_a_batch_with_a_malformed_label_is_refused_whole_and_names_each(service) -> None:
    client, log, _ = service
    client.post("/predict", json=[ride(ride_id=f"b{i}") for i in range(5)])
    labels = [
        {"ride_id": "b0", "duration": 10.0},
        {"ride_id": "b1", "duration": -4},
        {"ride_id": "b2", "duration": 12.5},
        {"ride_id": "unknown", "duration": 9.0},
        {"duration": 3.0},
    ]
    answer = client.post("/feedback", headers=FEED, json={"feedback": labels})
    assert answer.status_code == 400
    fields = [e["field"] for e in answer.get_json()["errors"]]
    assert fields == ["feedback[1].duration", "feedback[4].ride_id"]
    assert log.frame()["actual"].notna().sum() == 0  # nothing stored


def test_well_formed_labels_are_kept_and_refused_ones_named(service) -> None:
    client, log, _ = service
    client.post("/predict", json=[ride(ride_id=f"b{i}") for i in range(5)])
    labels = [
        {"ride_id": "b0", "duration": 10.0},
        {"ride_id": "b2", "duration": 12.5},
        {"ride_id": "unknown", "duration": 9.0},
    ]
    answer = client.post("/feedback", headers=FEED, json={"feedback": labels})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["accepted"] == 2
    assert [r["field"] for r in body["rejected"]] == ["feedback[2].ride_id"]
    assert log.frame()["actual"].notna().sum() == 2
    assert client.post("/feedback", headers=FEED, json={"feedback": []}).status_code == 400


def test_refused_rides_and_labels_are_counted_by_event_time(service) -> None:
    client, log, _ = service
    at = "2019-03-05T10:00:00"
    batch = [ride(ride_id=f"g{i}", pickup_datetime=at) for i in range(4)]
    batch[1]["trip_distance"] = 5000
    batch[3]["PULocationID"] = 999
    assert client.post("/predict", json=batch).status_code == 400
    # the client resends one by one: each bad ride is refused again, but counted once
    for item in batch:
        client.post("/predict", json=item)
    client.post("/feedback", headers=FEED, json={"ride_id": "g0", "duration": -1})
    assert log.rejected("2019-03-01", "2019-04-01") == {"/predict": 2, "/feedback": 1}
    assert log.rejected("2019-04-01", "2019-05-01") == {}
    window = log.window("2019-03-01", "2019-04-01")
    assert sorted(window["request_key"]) == ["g0", "g2"]
    assert window["trip_distance"].dtype == "float64"


def test_ab_report_covers_only_the_current_pair_and_modelled_labels(service) -> None:
    client, _, _ = service
    client.post("/admin/deploy", json={"version": 2, "percent": 50}, headers=AUTH)
    client.post("/predict", json=[ride(ride_id=f"o{i}") for i in range(40)])
    client.post(
        "/feedback",
        headers=FEED,
        json={"feedback": [{"ride_id": f"o{i}", "duration": 10 + i % 3} for i in range(40)]},
    )
    client.post("/admin/rollback", json={}, headers=AUTH)
    client.post("/admin/deploy", json={"version": 3, "percent": 50}, headers=AUTH)
    client.post("/predict", json=[ride(ride_id=f"n{i}") for i in range(20)])
    labels = [{"ride_id": f"n{i}", "duration": 10 + i % 4 if i < 15 else 300} for i in range(20)]
    client.post("/feedback", headers=FEED, json={"feedback": labels})
    report = client.get("/admin/ab-report?min_samples=1", headers=AUTH).get_json()
    assert report["green"] == 3
    counted = sum(q["n"] for q in report["variants"].values())
    assert counted == 15  # the earlier pair's 40 and the five 300-minute labels are left out
    assert client.get("/admin/ab-report?confidence=2", headers=AUTH).status_code == 400


def test_the_sequential_ab_report_pairs_shadow_scores(service) -> None:
    client, _, _ = service
    deploy = {"version": 3, "percent": 100, "mode": "shadow"}
    client.post("/admin/deploy", json=deploy, headers=AUTH)
    rides = [ride(ride_id=f"s{i}", trip_distance=1 + i % 7) for i in range(400)]
    client.post("/predict", json=rides)
    labels = [{"ride_id": f"s{i}", "duration": 8 + i % 11} for i in range(400)]
    client.post("/feedback", headers=FEED, json={"feedback": labels})
    query = "/admin/ab-report?test=sequential&min_samples=100&margin=0.05"
    report = client.get(query, headers=AUTH).get_json()
    assert (report["test"], report["mode"]) == ("sequential", "shadow")
    assert report["sample_ratio"] is None  # both variants score every ride: nothing to split
    assert report["sequence"]["n"] == 400  # one paired difference per ride
    assert {q["n"] for q in report["variants"].values()} == {400}
    for bad, field in (
        ("test=bayes", "test"),
        ("min_samples=1.5", "min_samples"),
        ("tuned_for=5", "tuned_for"),  # checked even when the test is Welch's
        ("margin=-1", "margin"),
    ):
        refused = client.get(f"/admin/ab-report?{bad}", headers=AUTH)
        assert refused.status_code == 400 and refused.get_json()["errors"][0]["field"] == field
    client.post("/admin/split", json={"percent": 20, "mode": "ab"}, headers=AUTH)
    split = client.get(query, headers=AUTH).get_json()
    assert split["mode"] == "ab" and split["sample_ratio"]["expected_share"] == 0.2


def test_a_pinned_service_answers_as_its_variant_and_refuses_deployment_changes(
    tmp_path: Path, models: dict
) -> None:
    from level3_deployment.routing import Variant
    from level3_deployment.service import ensure_pinned

    store = st.StateStore(tmp_path / "deployment.db")
    store.write(st.start(store.current(), 1, "an earlier champion", "test"), 0)
    ensure_pinned(store, 3)
    assert (store.current().blue, store.current().green) == (3, None)
    slots = SlotManager(store, lambda v: models[v], poll_s=0.05)
    log = PredictionLog(tmp_path / "predictions.db")
    hooks = AliasHooks(lambda v, r: None, lambda v, r: None)
    app = create_app(
        slots,
        log,
        store,
        token=TOKEN,
        feedback_token=FEED_TOKEN,
        aliases=hooks,
        pinned_as=Variant.GREEN,
    )
    slots.refresh()
    try:
        client = app.test_client()
        body = client.post("/predict", json=[ride(ride_id=i) for i in range(20)]).get_json()
        assert {(p["variant"], p["model_version"]) for p in body["predictions"]} == {("green", "3")}
        assert client.get("/health").get_json()["pinned_as"] == "green"
        for path, payload in [
            ("/admin/deploy", {"version": 2}),
            ("/admin/split", {"percent": 50}),
            ("/admin/promote", {}),
            ("/admin/rollback", {}),
        ]:
            response = client.post(path, json=payload, headers=AUTH)
            assert response.status_code == 409, path
            assert "pinned to v3 as green" in response.get_json()["error"]
        assert store.current().blue == 3
        assert log.count() == 20
        logged = log.window("2000-01-01", "2100-01-01")
        assert set(logged["variant"]) == {"green"}
        assert set(logged["model_version"].astype(str)) == {"3"}
    finally:
        slots.stop()
        log.close()


def test_health_names_the_worker_that_answered_and_how_many_the_service_runs(service) -> None:
    client, _, _ = service
    health = client.get("/health").get_json()
    assert (health["worker"], health["workers"]) == (f"{socket.gethostname()}:{os.getpid()}", 1)


def test_health_says_how_each_loaded_version_is_scored(service) -> None:
    client, _, _ = service
    predictors = client.get("/health").get_json()["predictors"]
    assert predictors["1"]["engine"] == "linear"
    assert "equal to the Pipeline within 1e-06" in predictors["1"]["reason"]


def test_a_version_whose_compiled_form_disagrees_is_served_by_its_pipeline(
    tmp_path: Path, models: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.compiled as compiled

    honest = compiled._linear

    def off(pipeline: object) -> compiled.CompiledForm:  # a compiler bug: half a minute more
        form = honest(pipeline)
        return compiled.CompiledForm(
            form.engine, lambda c: form.predict(c) + 0.5, lambda r: form.predict_one(r) + 0.5
        )

    monkeypatch.setattr(compiled, "_linear", off)
    store = st.StateStore(tmp_path / "deployment.db")
    store.write(st.start(store.current(), 1, "boot", "test"), 0)
    slots = SlotManager(store, lambda v: models[v], poll_s=0.05)
    log = PredictionLog(tmp_path / "predictions.db")
    hooks = AliasHooks(lambda v, r: None, lambda v, r: None)
    client = create_app(
        slots, log, store, token=TOKEN, feedback_token=FEED_TOKEN, aliases=hooks
    ).test_client()
    slots.refresh()
    try:
        one = ride(ride_id="cmp-1")
        answer = client.post("/predict", json=one).get_json()
        expected = models[1].predict({k: [v] for k, v in one.items() if k != "ride_id"})[0]
        assert answer["duration"] == round(float(expected), 4)
        predictor = client.get("/health").get_json()["predictors"]["1"]
        assert (
            predictor["engine"] == "sklearn"
            and "differs from the Pipeline by 0.5" in (predictor["reason"])
        )
    finally:
        slots.stop()
        log.close()


@contextmanager
def _worker_started_after_a_promotion(tmp_path: Path, client, load) -> Iterator[tuple]:
    """v2 deployed and promoted through ``client``'s worker; then a second worker over the same
    state (gunicorn replaced one, or the service restarted), loading with ``load``: it holds
    only what it loaded itself."""
    client.post("/admin/deploy", json={"version": 2, "percent": 50}, headers=AUTH)
    client.post("/admin/promote", headers=AUTH)
    store = st.StateStore(tmp_path / "deployment.db")
    slots = SlotManager(store, load, poll_s=60)
    log = PredictionLog(tmp_path / "predictions-later.db")
    hooks = AliasHooks(lambda v, r: None, lambda v, r: None)
    app = create_app(slots, log, store, token=TOKEN, feedback_token=FEED_TOKEN, aliases=hooks)
    slots.refresh()
    try:
        yield app.test_client(), slots, store
    finally:
        slots.stop()
        log.close()


def test_a_worker_started_after_a_promotion_loads_the_blue_it_replaced(
    tmp_path: Path, service, models: dict
) -> None:
    client, _, _ = service
    loads: list[int] = []

    def load(version: int):
        loads.append(version)
        return models[version]

    with _worker_started_after_a_promotion(tmp_path, client, load) as (later, slots, _):
        assert client.get("/health").get_json()["standby"] == {"version": 1, "loaded": True}
        # (asked of the slots: a first request would start the poller, which loads it too)
        assert slots.standby() == (1, False)
        slots.hold_standby()  # what its poller does after each refresh
        assert later.get("/health").get_json()["standby"] == {"version": 1, "loaded": True}
        assert later.post("/admin/rollback", headers=AUTH).status_code == 200
        assert loads == [2, 1]  # the rollback was a swap: nothing loaded when it came
        body = later.post("/predict", json=ride()).get_json()
        assert (body["variant"], body["model_version"]) == ("blue", "1")


def test_a_rollback_to_a_blue_that_cannot_load_is_refused_and_changes_nothing(
    tmp_path: Path, service, models: dict
) -> None:
    client, _, moves = service

    def load(version: int):
        if version == 1:
            raise OSError("the registry's artifact store is unreachable")
        return models[version]

    with _worker_started_after_a_promotion(tmp_path, client, load) as (later, slots, store):
        generation = store.current().generation
        slots.hold_standby()  # fails, as its poller's attempts do
        assert later.get("/health").get_json()["standby"] == {"version": 1, "loaded": False}
        response = later.post("/admin/rollback", headers=AUTH)
        assert response.status_code == 422
        error = response.get_json()["error"]
        assert "v1 cannot be restored, nothing changed" in error and "unreachable" in error
        assert (store.current().generation, store.current().blue) == (generation, 2)
        assert moves[-1][0] == "promote"  # the registry's champion did not move either
        assert later.post("/predict", json=ride()).get_json()["model_version"] == "2"
