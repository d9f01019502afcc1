"""The walkthroughs stay true: every README's command blocks marked `<!-- doc-test -->` run, in
order, in one shell, the way a reader would type them, in a fresh working folder (the project's
files linked in, `../shared` beside it, no `.taxi-mlops` yet); each `<!-- doc-test: expect -->`
text block's lines must appear in what the commands printed.

In an expected line, `…` stands for any text (timings, ports, hashes). Background services
(`cmd &`) are stopped when the README's script ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.readme_blocks import Block, expected_found, marked_blocks

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SHARED = ROOT.parent / "shared"
#: the project's READMEs, not those tools leave in hidden folders (.pytest_cache/README.md)
READMES = sorted(
    [
        ROOT / "README.md",
        *(p for p in ROOT.glob("*/README.md") if not p.parent.name.startswith(".")),
    ]
)
#: linked into the working folder: what a reader's checkout holds, minus state and caches
SKIP = {".git", ".taxi-mlops", ".pytest_cache", ".ruff_cache", "__pycache__"}


def working_folder(tmp_path: Path) -> Path:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in SKIP:
            (checkout / entry.name).symlink_to(entry)
    if SHARED.exists():
        (tmp_path / "shared").symlink_to(SHARED)
    return checkout


def script(blocks: list[Block]) -> str:
    body = "\n".join(b.text for b in blocks if b.kind == "run")
    return (
        "set -euo pipefail\n"
        # stop what the README started in the background, whatever happens
        "trap 'for p in $(jobs -p); do kill \"$p\" 2>/dev/null || true; done; wait' EXIT\n"
        f"{body}\n"
    )


WITH_BLOCKS = [r for r in READMES if any(b.kind == "run" for b in marked_blocks(r))]


def test_every_readme_is_checked() -> None:
    """The top-level tour, each level's walkthrough and infra/: none without run blocks."""
    assert WITH_BLOCKS == READMES, sorted(
        str(r.relative_to(ROOT)) for r in set(READMES) - set(WITH_BLOCKS)
    )
    assert all(any(b.kind == "expect" for b in marked_blocks(r)) for r in READMES)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("readme", WITH_BLOCKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_commands_work_as_written(readme: Path, tmp_path: Path) -> None:
    blocks = marked_blocks(readme)
    if "../shared/" in script(blocks) and not SHARED.exists():
        pytest.skip(f"{SHARED} is absent: this walkthrough reads the real TLC samples")
    cwd = working_folder(tmp_path)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TAXI_MLOPS_", "MLFLOW_", "PREFECT_API"))
    }
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    # Terraform's working data: a fresh checkout has none, and `init` must not write into this
    # one through the linked folders
    env["TF_DATA_DIR"] = str(tmp_path / "terraform-data")
    completed = subprocess.run(
        ["bash", "-c", script(blocks)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        # under the suite's parallel load the level-2 walkthrough (four Prefect runs, a KFP run)
        # took 427 s on 2 cores (175 s alone): a slower runner keeps a margin; pytest's own
        # limit for this test is 900 s
        timeout=870,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"{readme.name}: the commands failed:\n{output[-4000:]}"
    for block in (b for b in blocks if b.kind == "expect"):
        missing = expected_found(block.text, output)
        assert not missing, (
            f"{readme.relative_to(ROOT)} line {block.line}: not printed: {missing}\n"
            f"output:\n{output[-4000:]}"
        )
    assert not list((cwd / ".taxi-mlops" / "run").glob("*.pid")), "a service was left running"
