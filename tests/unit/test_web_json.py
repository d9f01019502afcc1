"""JSON on the hot path: orjson where it is faster, the standard library where it decides.

What a client sends is read as the standard library reads it (orjson's refusals go to it), and
what a service answers decodes to the values Flask's own encoder would have written."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

import numpy as np
import pytest
from flask import Flask
from flask.json.provider import DefaultJSONProvider

from shared.data.validate import ValidationBounds
from shared.serving import RequestValidationError, parse_rides
from shared.statedb.database import compact_json
from shared.web import FastJSON, install_json_errors, json_app, parse_json, request_bytes

DOCUMENTS = [
    b'{"PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.5}',
    b'[{"ride_id": "caf\\u00e9 \xc3\xa9", "trip_distance": 0.1}, {"x": 1e300, "y": -0.0}]',
    b'{"a": {"b": [1, 2.0, 3.25e-5, true, false, null]}, "a": 2}',
    b'  {"big": 9223372036854775807, "small": -9223372036854775808}  ',
    b'"just a string"',
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_orjson_reads_what_the_standard_library_reads(document: bytes) -> None:
    assert parse_json(document) == json.loads(document)


@pytest.mark.parametrize(
    ("document", "value"),
    [
        (b'{"ride_id": ' + b"9" * 400 + b"}", {"ride_id": 10**400 - 1}),
        (b'{"ride_id": "\\ud800"}', {"ride_id": "\ud800"}),
        (b'\xef\xbb\xbf{"a": 1}'.decode("utf-8-sig").encode("utf-16"), {"a": 1}),
    ],
)
def test_what_orjson_refuses_the_standard_library_decides(document: bytes, value: object) -> None:
    assert parse_json(document) == value


def test_nesting_is_judged_by_the_standard_library() -> None:
    for depth in (254, 255, 300):
        document = b"[" * depth + b"1" + b"]" * depth
        assert parse_json(document) == json.loads(document)


def test_refused_by_both_is_a_400_naming_the_body() -> None:
    deep = b"[" * 1000 + b"]" * 1000  # orjson reads it, the standard library does not
    for document in (b"{nope", b'{"a": NaN}', b"[" * 100_000, deep, b"\xff\xfe\xfa"):
        with pytest.raises(RequestValidationError) as caught:
            parse_json(document)
        assert caught.value.errors[0].field == "body"


def test_a_value_orjson_refuses_is_named_at_its_field() -> None:
    payload = parse_json(b'[{"ride_id": "\\ud800", "PULocationID": 1, "DOLocationID": 2, '
                         b'"trip_distance": 1}]')  # fmt: skip
    with pytest.raises(RequestValidationError) as caught:
        parse_rides(payload, ValidationBounds())
    assert caught.value.errors[0].field == "[0].ride_id"
    assert "lone surrogate" in caught.value.errors[0].message


@dataclasses.dataclass
class _Point:
    x: float
    label: str


def test_answers_decode_to_what_flasks_encoder_writes() -> None:
    fast, default = json_app(__name__), Flask(__name__)
    default.json.sort_keys = False  # type: ignore[attr-defined]
    value = {
        "z": 1,
        "a": [1.5, 1e16, 0.1, -0.0, 12.3456, "é"],
        "when": dt.datetime(2019, 2, 11, 8, 30, tzinfo=dt.UTC),
        "point": _Point(1.0, "x"),
        "np": np.float64(2.5),
    }
    with fast.app_context():
        body = fast.json.response(value).get_data()
    with default.app_context():
        expected = default.json.response(value).get_data()
    assert isinstance(fast.json, FastJSON) and body.endswith(b"\n")
    assert json.loads(body) == json.loads(expected)
    assert list(json.loads(body)) == list(value)  # keys keep their order


def test_non_finite_numbers_are_answered_as_null_not_as_invalid_json() -> None:
    app = json_app(__name__)
    with app.app_context():
        body = app.json.response({"d": math.nan, "e": math.inf}).get_data()
    assert json.loads(body) == {"d": None, "e": None}
    assert DefaultJSONProvider(app).dumps({"d": math.nan}) == '{"d": NaN}'  # what it replaced


def test_a_body_shorter_than_its_declared_length_is_a_408() -> None:
    app = json_app(__name__)
    install_json_errors(app, 1 << 20)

    @app.post("/echo")
    def echo() -> dict[str, int]:
        return {"bytes": len(request_bytes())}

    client = app.test_client()
    assert client.post("/echo", data=b'{"a": 1}').get_json() == {"bytes": 8}
    short = client.post("/echo", data=b'{"a": 1}', environ_overrides={"CONTENT_LENGTH": "100"})
    assert short.status_code == 408 and short.get_json()["errors"][0]["field"] == "body"
    too_long = client.post("/echo", data=b"x" * (2 << 20))
    assert too_long.status_code == 413


def test_stored_json_is_valid_json_and_keeps_float_subclasses() -> None:
    class Minutes(float):
        pass

    assert compact_json({"a": np.float64(1.5), "b": [1, "é"]}) == '{"a":1.5,"b":[1,"é"]}'
    assert json.loads(compact_json({"m": Minutes(2.5)})) == {"m": 2.5}  # the stdlib's way
    assert json.loads(compact_json({"x": math.nan})) == {"x": None}
    with pytest.raises(TypeError):
        compact_json({"x": object()})


def test_many_values_fill_a_histogram_as_one_by_one_observations() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    from shared.metrics import DURATION_BUCKETS, observe_many

    values = np.array([0.5, 1.0, 1.0000001, 5, 90, 91, 1e9, -3, math.nan, 15, 15, 45.5])
    bulk, single = (
        Histogram(name, "h", buckets=DURATION_BUCKETS, registry=CollectorRegistry())
        for name in ("bulk", "single")
    )
    observe_many(bulk, values)
    for value in values:
        single.observe(float(value))

    def samples(histogram: Histogram) -> dict[str, float]:
        (metric,) = histogram.collect()
        return {
            f"{s.name.split('_')[-1]}{s.labels.get('le', '')}": s.value
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    got, expected = samples(bulk), samples(single)
    assert {k: v for k, v in got.items() if k != "sum"} == {
        k: v for k, v in expected.items() if k != "sum"
    }
    assert math.isnan(got["sum"]) and math.isnan(expected["sum"])
    observe_many(bulk, values[:3])  # few values: one by one
    assert samples(bulk)["count"] == len(values) - 1 + 3  # the NaN is in no bucket
