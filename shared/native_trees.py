"""Boosted trees as native code: TL2cgen writes a Treelite model as C (one nested ``if`` per
split, thresholds and leaves as exact literals), gcc builds it into a shared library, and the
hot path calls it through ctypes.

Treelite's GTIL (shared/compiled.py) interprets the trees: ~0.15 us a tree a row, so a one-ride
answer of the hgb champion (80-300 trees) costs 12-45 us, and of the five-member ensemble
hundreds. The generated code walks the same trees as straight-line branches. A batch goes
through ``taxi_predict_rows`` (numpy matrices; the GIL released, as ctypes does); one ride
through ``taxi_predict_one``, called with its features as a C array and the GIL held: under
load the numpy wrapping cost more than the trees, and giving the GIL up for a microseconds'
call let another request's thread in before this one could answer. What it costs:
a C compiler where the service runs, and a build when a version is first loaded (seconds; the
library is kept under a folder keyed by the model's bytes, so the other workers and later
loads of the same version reuse it). Without a compiler, or if TL2cgen or the build fails, the
caller keeps GTIL; either way the probe batch proves the answers before they serve.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: gcc's optimisation level: -O1 builds a large ensemble in a fraction of -O2's time, and the
#: trees' branches leave little for -O2 to add
OPTIMISATION = "-O1"
#: translation units per model, built in parallel
PARALLEL_UNITS = 4
#: entry points next to TL2cgen's ``predict`` (a batch, and one row): NaN becomes TL2cgen's
#: "missing" marker (an ``int`` of -1 in the entry's union), every row starts from 0
_ENTRY_POINTS_C = """
#include "header.h"

void taxi_predict_rows(const double* rows, long n_rows, long width, double* out) {
  union Entry* entry = (union Entry*) malloc(sizeof(union Entry) * (size_t) width);
  for (long i = 0; i < n_rows; ++i) {
    for (long j = 0; j < width; ++j) {
      double value = rows[i * width + j];
      if (isnan(value)) {
        entry[j].missing = -1;
      } else {
        entry[j].fvalue = value;
      }
    }
    double result[1] = {0.0};
    predict(entry, 0, result);
    out[i] = result[0];
  }
  free(entry);
}

double taxi_predict_one(const double* row, long width) {
  union Entry entry[width];
  for (long j = 0; j < width; ++j) {
    if (isnan(row[j])) {
      entry[j].missing = -1;
    } else {
      entry[j].fvalue = row[j];
    }
  }
  double result[1] = {0.0};
  predict(entry, 0, result);
  return result[0];
}
"""


class NativeUnavailable(Exception):  # noqa: N818 - a verdict: the caller keeps GTIL
    """No native library for this model: no compiler, no TL2cgen, or the build failed."""


def compiler() -> str | None:
    """The C compiler the build uses (``CC``, else gcc or cc on the PATH), or None."""
    for name in (os.environ.get("CC"), "gcc", "cc"):
        if name and shutil.which(name):
            return name
    return None


class NativeTrees:
    """A model's library: ``trees(features)`` scores a float64 matrix (rows x the model's
    features), :meth:`one` one row of Python floats."""

    def __init__(self, library: Path, width: int) -> None:
        try:
            # the same library twice: ctypes releases the GIL around CDLL's calls, not PyDLL's
            self._libraries = (ctypes.CDLL(str(library)), ctypes.PyDLL(str(library)))
            rows = self._libraries[0].taxi_predict_rows
            one = self._libraries[1].taxi_predict_one
        except (OSError, AttributeError) as exc:
            raise NativeUnavailable(f"cannot load {library.name}: {exc}") from None
        rows.restype, one.restype = None, ctypes.c_double
        rows.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p]
        one.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_long]
        self._rows, self._one, self.width = rows, one, width
        self._row_type = ctypes.c_double * width

    def __call__(self, features: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(features, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"expected rows of {self.width} features, got shape {rows.shape}")
        out = np.empty(rows.shape[0], dtype=np.float64)
        self._rows(rows.ctypes.data, rows.shape[0], self.width, out.ctypes.data)
        return out

    def one(self, row: Sequence[float]) -> float:
        if len(row) != self.width:
            raise ValueError(f"expected a row of {self.width} features, got {len(row)}")
        return self._one(self._row_type(*row), self.width)  # ctypes: restype c_double, a float


def native_predictor(model: Any, cache_dir: Path) -> NativeTrees:
    """``model`` (a Treelite model with one output) through a library built once per model in
    ``cache_dir``; NativeUnavailable when it cannot be built."""
    return NativeTrees(_library(model, cache_dir), int(model.num_feature))


def _library(model: Any, cache_dir: Path) -> Path:
    """The model's library in ``cache_dir``, built there first if it is not yet: under a lock
    file, so that two workers loading the same version build it once."""
    cc = compiler()
    if cc is None:
        raise NativeUnavailable("no C compiler (gcc or cc, or CC) on the PATH")
    key = _key(model, cc)
    cache_dir.mkdir(parents=True, exist_ok=True)
    library = cache_dir / f"trees-{key}.so"
    with open(cache_dir / f"trees-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not library.exists():
            _build(model, cc, library)
    return library


def _key(model: Any, cc: str) -> str:
    """What the library depends on: the model, the code generator, the compiler and flags."""
    try:
        import tl2cgen
    except ImportError:
        raise NativeUnavailable("TL2cgen is not installed") from None
    digest = hashlib.sha256(bytes(model.serialize_bytes()))
    digest.update(f"{tl2cgen.__version__} {cc} {OPTIMISATION} {_ENTRY_POINTS_C}".encode())
    return digest.hexdigest()[:24]


def _build(model: Any, cc: str, library: Path) -> None:
    import tl2cgen

    with tempfile.TemporaryDirectory(prefix="taxi-trees-") as tmp:
        source = Path(tmp)
        try:
            tl2cgen.generate_c_code(model, dirpath=source, params={"parallel_comp": PARALLEL_UNITS})
        except Exception as exc:  # TL2cgen names what it cannot translate
            raise NativeUnavailable(f"TL2cgen cannot translate the model: {exc}") from None
        (source / "taxi_rows.c").write_text(_ENTRY_POINTS_C)
        built = source / "trees.so"
        _compile(cc, sorted(source.glob("*.c")), built)
        # renamed into place whole: a reader never sees a half-written library
        partial = library.with_suffix(".so.partial")
        shutil.copyfile(built, partial)
        os.replace(partial, library)
    logger.info("built native trees %s", library.name)


def _compile(cc: str, units: list[Path], built: Path) -> None:
    """Each translation unit in a process of its own (the model's trees are split across
    them), then one link."""
    objects = [unit.with_suffix(".o") for unit in units]
    running: list[subprocess.Popen[str]] = []
    for unit, obj in zip(units, objects, strict=True):
        command = [cc, OPTIMISATION, "-fPIC", "-c", str(unit), "-o", str(obj)]
        running.append(subprocess.Popen(command, stderr=subprocess.PIPE, text=True))  # noqa: S603
        if len(running) >= (os.cpu_count() or 1):
            _finish(cc, running.pop(0))
    for process in running:
        _finish(cc, process)
    link = [cc, "-shared", "-o", str(built), *map(str, objects), "-lm"]
    _finish(cc, subprocess.Popen(link, stderr=subprocess.PIPE, text=True))  # noqa: S603


def _finish(cc: str, process: subprocess.Popen[str]) -> None:
    _, errors = process.communicate()
    if process.returncode != 0:
        raise NativeUnavailable(f"{cc} failed: {errors.strip()[-300:]}")
