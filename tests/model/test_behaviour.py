"""Model behaviour: invariances that must hold and directions a duration model must follow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.data.generator import generate_month
from shared.data.schema import to_canonical
from shared.data.validate import ValidationBounds, clean_trips
from shared.features import build_pipeline, split_xy
from shared.serving import parse_rides, predict_durations
from tests.factories import ride


@pytest.fixture(scope="module")
def model():
    clean, _ = clean_trips(
        to_canonical(generate_month("2019-03", 30_000, seed=5), "g"), ValidationBounds()
    )
    return build_pipeline().fit(*split_xy(clean))


def predict(model, rides: list[dict]) -> np.ndarray:
    return predict_durations(model, parse_rides(rides, ValidationBounds()))


def test_ride_id_does_not_change_the_prediction(model) -> None:
    a, b = predict(model, [ride(ride_id="x"), ride(ride_id=12345)])
    assert a == b


def test_batch_equals_one_by_one_and_order_does_not_matter(model) -> None:
    rides = [ride(PULocationID=z, trip_distance=d) for z, d in [(161, 1.0), (132, 17.0), (48, 3.2)]]
    batch = predict(model, rides)
    single = np.array([predict(model, [r])[0] for r in rides])
    np.testing.assert_allclose(batch, single)
    np.testing.assert_allclose(predict(model, rides[::-1]), batch[::-1])


def test_serving_path_equals_training_path(model) -> None:
    rides = [ride(PULocationID=z) for z in (161, 236, 237)]
    frame = pd.DataFrame(rides)
    np.testing.assert_allclose(predict(model, rides), model.predict(frame))


def test_longer_trips_take_longer(model) -> None:
    durations = predict(model, [ride(trip_distance=d) for d in (0.5, 2, 5, 10, 20)])
    assert np.all(np.diff(durations) > 0)


def test_unseen_zone_still_gets_a_sane_answer(model) -> None:
    (value,) = predict(model, [ride(PULocationID=105, DOLocationID=110, trip_distance=2.0)])
    assert 1 < value < 60
