from __future__ import annotations

import random

import pytest
from scipy.stats import chisquare

from level3_deployment.routing import BUCKETS, Mode, SplitPolicy, Variant, assign, bucket_of

KEYS = [f"ride-{i}" for i in range(20_000)]


def shares(policy: SplitPolicy, keys: list[str]) -> dict[Variant, int]:
    counts = {Variant.BLUE: 0, Variant.GREEN: 0}
    for key in keys:
        counts[assign(policy, key).answer] += 1
    return counts


def test_buckets_are_stable_and_in_range() -> None:
    assert bucket_of("ride-1") == bucket_of("ride-1")
    assert all(0 <= bucket_of(k) < BUCKETS for k in KEYS[:1000])
    # Pinned values: a change of hash would silently move every user to another variant.
    assert bucket_of("ride-42") == 3309
    assert bucket_of("7f3c-0001") == 8382


@pytest.mark.parametrize("percent", [0, 10, 50, 90, 100])
def test_observed_split_matches_the_weights(percent: float) -> None:
    counts = shares(SplitPolicy(Mode.AB, percent), KEYS)
    if percent in (0, 100):
        assert counts[Variant.GREEN] == len(KEYS) * percent // 100
        return
    expected = [len(KEYS) * (100 - percent) / 100, len(KEYS) * percent / 100]
    assert chisquare([counts[Variant.BLUE], counts[Variant.GREEN]], expected).pvalue > 0.001


def test_sticky_and_monotone() -> None:
    previous: dict[str, Variant] = {}
    for percent in (0, 10, 25, 50, 75, 100):
        policy = SplitPolicy(Mode.AB, percent)
        current = {k: assign(policy, k).answer for k in KEYS[:5000]}
        assert current == {k: assign(policy, k).answer for k in KEYS[:5000]}  # sticky
        for key, variant in previous.items():
            if variant is Variant.GREEN:
                assert current[key] is Variant.GREEN  # raising the share never moves keys back
        previous = current


def test_off_and_shadow_always_answer_blue() -> None:
    assert shares(SplitPolicy(Mode.OFF, 80), KEYS[:2000])[Variant.GREEN] == 0
    shadow = [assign(SplitPolicy(Mode.SHADOW, 30), k) for k in KEYS[:10_000]]
    assert all(a.answer is Variant.BLUE for a in shadow)
    assert sum(a.shadow for a in shadow) == pytest.approx(3000, rel=0.08)


def test_requests_without_a_key_follow_the_weights() -> None:
    rng = random.Random(0)
    answers = [assign(SplitPolicy(Mode.AB, 20), None, rng) for _ in range(20_000)]
    assert all(a.bucket is None for a in answers)
    green = sum(a.answer is Variant.GREEN for a in answers)
    assert chisquare([20_000 - green, green], [16_000, 4_000]).pvalue > 0.001


def test_share_is_checked() -> None:
    with pytest.raises(ValueError, match=r"expected 0\.\.100"):
        SplitPolicy(Mode.AB, 120)
