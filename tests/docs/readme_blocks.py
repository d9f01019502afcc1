"""Marked command blocks of a README and the matching of their expected output.

A ``<!-- doc-test -->`` line before a fenced block marks commands to run; ``<!-- doc-test:
expect -->`` marks lines that must appear in what they printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MARK = re.compile(r"^<!-- doc-test(?::\s*(\w+))? -->\s*$")


@dataclass(frozen=True)
class Block:
    kind: str  # "run" or "expect"
    text: str
    line: int


def marked_blocks(readme: Path) -> list[Block]:
    lines = readme.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        mark = MARK.match(lines[i])
        if mark and i + 1 < len(lines) and lines[i + 1].startswith("```"):
            kind = mark.group(1) or "run"
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            blocks.append(Block(kind, "\n".join(lines[i + 2 : end]), i + 2))
            i = end
        i += 1
    return blocks


#: a decimal number in an expected line: matched with a tolerance of one unit in its last
#: printed digit (BLAS kernels differ between CPUs, so the 4th decimal of an RMSE can differ
#: from one machine to the next); integers (row counts, status codes) must match exactly
DECIMAL = re.compile(r"-?\d+\.\d+")


def line_pattern(line: str) -> tuple[re.Pattern[str], list[str]]:
    """A regex for one expected line (``…`` is any text within a line; each decimal becomes a
    capture group) and the decimals as written."""
    parts, decimals = [], []
    for piece in line.split("…"):
        position = 0
        for number in DECIMAL.finditer(piece):
            parts.append(re.escape(piece[position : number.start()]))
            parts.append(r"(-?\d+\.\d+)")
            decimals.append(number.group())
            position = number.end()
        parts.append(re.escape(piece[position:]))
        parts.append(".*")
    return re.compile("".join(parts[:-1])), decimals


def numbers_close(expected: list[str], found: tuple[str, ...]) -> bool:
    for want, got in zip(expected, found, strict=True):
        places = len(want.split(".")[1])
        if len(got.split(".")[1]) != places or abs(float(want) - float(got)) > 1.01 * 10**-places:
            return False
    return True


def expected_found(expected: str, output: str) -> list[str]:
    """The expected lines missing from ``output``."""
    missing = []
    out_lines = output.splitlines()
    for line in filter(None, (x.strip() for x in expected.splitlines())):
        pattern, decimals = line_pattern(line)
        if not any(
            (m := pattern.search(out)) and numbers_close(decimals, m.groups()) for out in out_lines
        ):
            missing.append(line)
    return missing
