"""The level-1 Flask app in-process (the gunicorn integration test covers the real server)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from level1_devops.app import create_app, create_app_from_file
from shared.data.validate import ValidationBounds, clean_trips
from shared.errors import ModelLoadError
from shared.features import build_pipeline, split_xy
from shared.model_io import save_model
from tests.factories import ride, trips


@pytest.fixture(scope="module")
def pipeline():
    frame = trips(
        60,
        PULocationID=np.arange(60) % 10 + 150,
        DOLocationID=np.arange(60) % 9 + 230,
        trip_distance=np.linspace(0.5, 12, 60),
        minutes=np.linspace(4, 50, 60),
    )
    clean, _ = clean_trips(frame, ValidationBounds(min_rows=1))
    return build_pipeline().fit(*split_xy(clean))


@pytest.fixture
def client(pipeline) -> FlaskClient:
    return create_app(pipeline, "abc123").test_client()


def test_predict_one_ride_course_shape(client: FlaskClient) -> None:
    response = client.post("/predict", json=ride(ride_id="r-1"))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"duration", "ride_id", "model_version"}
    assert body["ride_id"] == "r-1" and body["model_version"] == "abc123"
    assert 0 < body["duration"] < 120


def test_predict_a_list(client: FlaskClient) -> None:
    response = client.post("/predict", json=[ride(), ride(trip_distance=9, ride_id=2)])
    preds = response.get_json()["predictions"]
    assert len(preds) == 2 and preds[1]["ride_id"] == 2


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, "body"),
        (b"", 400, "body"),
        (json.dumps({"DOLocationID": 1, "trip_distance": 2}).encode(), 400, "PULocationID"),
        (json.dumps(ride(trip_distance="far")).encode(), 400, "trip_distance"),
        (json.dumps(ride(trip_distance=-4)).encode(), 400, "trip_distance"),
        (json.dumps(ride(PULocationID=0)).encode(), 400, "PULocationID"),
        (json.dumps(ride(DOLocationID=999)).encode(), 400, "DOLocationID"),
        (b"[]", 400, "body"),
        (json.dumps([ride()] * 1001).encode(), 400, "body"),
        (b"x" * (10 * 1024 * 1024), 413, "body"),
    ],
)
def test_bad_requests_get_json_4xx_naming_the_field(
    client: FlaskClient, body: bytes, status: int, field: str
) -> None:
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == status
    payload = response.get_json()
    assert payload["errors"][0]["field"] == field
    assert field in payload["error"] or status == 413 or field == "body"
    assert "Traceback" not in response.get_data(as_text=True)


def test_unknown_path_and_method(client: FlaskClient) -> None:
    assert client.get("/nope").get_json()["errors"][0]["field"] == "path"
    response = client.get("/predict")
    assert response.status_code == 405
    assert response.get_json()["errors"][0]["field"] == "method"


def test_unexpected_failure_is_a_json_500_without_trace(pipeline) -> None:
    class Broken:
        def predict(self, X: object) -> None:
            raise RuntimeError("secret internals")

    client = create_app(Broken(), "v").test_client()  # type: ignore[arg-type]
    response = client.post("/predict", json=ride())
    assert response.status_code == 500
    assert "secret" not in response.get_data(as_text=True)


def test_health_and_metrics(client: FlaskClient) -> None:
    assert client.get("/health").get_json()["status"] == "ok"
    client.post("/predict", json=ride())
    client.post("/predict", json=ride(PULocationID=0))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'taxi_level1_requests_total{endpoint="/predict",status="200"} 1.0' in text
    assert 'taxi_level1_errors_total{endpoint="/predict",status="400"} 1.0' in text
    assert "taxi_level1_request_latency_seconds_bucket" in text
    assert "taxi_level1_predictions_total 1.0" in text


def test_app_from_file_reports_a_content_version(tmp_path: Path, pipeline) -> None:
    path = tmp_path / "m.joblib"
    save_model(pipeline, path, {"created_at": "now"})
    health = create_app_from_file(path).test_client().get("/health").get_json()
    assert len(health["model_version"]) == 12 and health["trained"] == "now"


def test_model_file_problems_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such model file"):
        create_app_from_file(tmp_path / "missing.joblib")
    junk = tmp_path / "junk.joblib"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="cannot load model"):
        create_app_from_file(junk)
