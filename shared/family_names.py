"""The model families' names, without the libraries that build them (shared/models.py).

The CLI lists them in its help and checks ``--models`` before anything starts: from
shared/models.py, every ``taxi-mlops level2`` command (``history``, ``status``, ``server``
included) would first import scikit-learn, ~2.5 s.
"""

from __future__ import annotations

from shared.errors import ConfigError

#: every family shared/models.py builds, in its order (a unit test holds the two together)
FAMILY_NAMES = ("linear", "ridge", "hgb", "hgb_ensemble")


def check_family(name: str) -> str:
    """``name``, if it is a family's; else a :class:`ConfigError` that lists them."""
    if name not in FAMILY_NAMES:
        raise ConfigError(f"model family {name!r}: expected one of {', '.join(FAMILY_NAMES)}")
    return name
