"""Save and load model artifacts: the fitted Pipeline in one file, metadata in a JSON sidecar.

Loading a pickle runs code from the file: only load artifacts this project wrote.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import joblib
from sklearn.pipeline import Pipeline

from shared.errors import ModelLoadError


def metadata_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".json")


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_model(pipeline: Pipeline, path: Path, metadata: dict[str, Any]) -> None:
    """Write the model and its metadata; each file appears whole or not at all."""
    _atomic_write(path, lambda tmp: joblib.dump(pipeline, tmp))
    _atomic_write(
        metadata_path(path), lambda tmp: tmp.write_text(json.dumps(metadata, indent=2, default=str))
    )


def load_model(path: Path) -> tuple[Pipeline, dict[str, Any]]:
    """Load a model saved by :func:`save_model`. Metadata is optional (level 0 has none)."""
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file")
    try:
        pipeline = joblib.load(path)
    except Exception as exc:  # unpickling can fail in many ways; all mean "not our model"
        raise ModelLoadError(f"{path}: cannot load model ({type(exc).__name__}: {exc})") from None
    if not hasattr(pipeline, "predict"):
        raise ModelLoadError(f"{path}: holds a {type(pipeline).__name__}, not a model")
    meta_file = metadata_path(path)
    metadata: dict[str, Any] = {}
    if meta_file.exists():
        try:
            metadata = json.loads(meta_file.read_text())
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"{meta_file}: invalid JSON ({exc})") from None
    return pipeline, metadata
