"""Which variant (blue or green) serves a request: deterministic, sticky and monotone.

A request key (the ride id, or a header) is hashed into one of 10,000 buckets; green serves the
buckets below its share. So a key always gets the same variant for a given split, and raising
green's share only moves keys from blue to green, never back. Requests without a key are
assigned at random, with the same probabilities.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from enum import StrEnum

BUCKETS = 10_000


class Mode(StrEnum):
    OFF = "off"  # blue only
    AB = "ab"  # green answers its share of requests
    SHADOW = "shadow"  # green also scores its share; the caller always gets blue's answer


class Variant(StrEnum):
    BLUE = "blue"
    GREEN = "green"


@dataclass(frozen=True)
class SplitPolicy:
    mode: Mode = Mode.OFF
    green_percent: float = 0.0  # 0..100, to 0.01 %

    def __post_init__(self) -> None:
        if not 0.0 <= self.green_percent <= 100.0:
            raise ValueError(f"green_percent={self.green_percent}: expected 0..100")

    @property
    def green_buckets(self) -> int:
        return 0 if self.mode is Mode.OFF else round(self.green_percent * BUCKETS / 100)


@dataclass(frozen=True)
class Assignment:
    answer: Variant  # whose prediction the caller gets
    shadow: bool  # green also scores this request (shadow mode)
    bucket: int | None  # None when the request had no key


def bucket_of(key: str) -> int:
    """A stable bucket in 0..BUCKETS-1 (the same in every process and on every machine)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def assign(policy: SplitPolicy, key: str | None, rng: random.Random | None = None) -> Assignment:
    bucket = bucket_of(key) if key is not None else None
    draw = bucket if bucket is not None else (rng or random).randrange(BUCKETS)
    in_green = draw < policy.green_buckets
    if policy.mode is Mode.SHADOW:
        return Assignment(Variant.BLUE, in_green, bucket)
    return Assignment(Variant.GREEN if in_green else Variant.BLUE, False, bucket)
