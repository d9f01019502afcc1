"""The model families' names, without the models: what a command line lists in its help before it
imports scikit-learn (~2 CPU-s a process). :mod:`shared.models` defines one family under each of
these names, in this order (tests/unit/test_models.py checks it)."""

from __future__ import annotations

FAMILY_NAMES: tuple[str, ...] = ("linear", "ridge", "hgb", "hgb_ensemble")
