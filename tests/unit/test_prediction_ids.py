"""Prediction ids: UUID version 7, so that the log's unique index grows at its end."""

from __future__ import annotations

import time
import uuid

from level3_deployment.prediction_log import new_prediction_id


def test_ids_are_uuid7_hex_and_unique() -> None:
    ids = [new_prediction_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:100]:
        parsed = uuid.UUID(hex=text)
        assert len(text) == 32 and parsed.hex == text
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    millis = int(ids[-1][:12], 16)
    assert abs(millis / 1000 - time.time()) < 60


def test_ids_of_later_milliseconds_sort_after_earlier_ones() -> None:
    first = new_prediction_id()
    time.sleep(0.003)
    later = [new_prediction_id() for _ in range(100)]
    assert all(first < text for text in later)
