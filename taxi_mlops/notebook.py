"""Execute a notebook headless with parameters, papermill style, and read values back."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from shared.errors import TaxiMlopsError


class NotebookError(TaxiMlopsError):
    """A notebook cell failed."""


def execute_notebook(
    path: Path, parameters: dict[str, Any], read_back: list[str], *, timeout_s: int = 600
) -> tuple[Any, dict[str, Any]]:
    """Run ``path`` with ``parameters`` injected after its ``parameters`` cell.

    Returns the executed notebook and the values of the ``read_back`` variables (JSON-able).
    """
    nb = nbformat.read(path, as_version=4)
    index = next(
        (
            i
            for i, c in enumerate(nb.cells)
            if "parameters" in c.get("metadata", {}).get("tags", [])
        ),
        -1,
    )
    assignments = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    injected = nbformat.v4.new_code_cell(
        "# Parameters injected by taxi-mlops\n" + assignments,
        metadata={"tags": ["injected-parameters"]},
    )
    nb.cells.insert(index + 1, injected)
    probe = nbformat.v4.new_code_cell(
        "import json as _json\nprint(_json.dumps({"
        + ", ".join(f"{name!r}: float({name})" for name in read_back)
        + "}))"
    )
    nb.cells.append(probe)
    # IPC sockets instead of unencrypted TCP; their files go to a scratch folder.
    with tempfile.TemporaryDirectory(prefix="taxi-mlops-kernel-") as scratch:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(scratch) / "ipc"))
        client = NotebookClient(
            nb, km=km, timeout=timeout_s, resources={"metadata": {"path": str(path.parent)}}
        )
        try:
            # We own the kernel manager, so ask nbclient to shut the kernel down while its
            # IPC sockets still exist (otherwise it lingers until it notices we exited).
            with client.setup_kernel(cleanup_kc=True):
                for index_, cell in enumerate(nb.cells):
                    client.execute_cell(cell, index_)
        except CellExecutionError as exc:
            text = str(exc).strip()
            last = text.splitlines()[-1] if text else repr(exc)
            raise NotebookError(f"{path}: a cell failed: {last}") from None
    nb.cells.pop()  # the probe is ours, not the notebook's
    outputs = probe.get("outputs", [])
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    return nb, json.loads(text.strip().splitlines()[-1])
