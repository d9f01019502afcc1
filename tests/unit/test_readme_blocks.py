"""The README checker's own rules: what a marked block is and what counts as printed."""

from __future__ import annotations

from pathlib import Path

from tests.docs.readme_blocks import expected_found, marked_blocks

OUTPUT = (
    'serving on http://127.0.0.1:8000\n{"duration":11.8335,"ride_id":"r1","model_version":"dd1f"}\n'
    "trained on 9861 rows, validation RMSE 5.838 min\n"
)


def test_a_decimal_may_differ_by_one_in_its_last_digit() -> None:
    assert expected_found('{"duration":11.8334,"ride_id":"r1","model_version":"…"}', OUTPUT) == []
    assert expected_found("validation RMSE 5.839 min", OUTPUT) == []


def test_a_decimal_further_off_or_printed_differently_is_missing() -> None:
    assert expected_found('{"duration":11.8332,"ride_id":"r1"…', OUTPUT) != []
    assert expected_found("validation RMSE 5.84 min", OUTPUT) != []  # other precision
    assert expected_found("validation RMSE 5.8380 min", OUTPUT) != []


def test_integers_match_exactly() -> None:
    assert expected_found("trained on 9861 rows", OUTPUT) == []
    assert expected_found("trained on 9862 rows", OUTPUT) == ["trained on 9862 rows"]


def test_an_ellipsis_matches_within_one_line_only() -> None:
    assert expected_found("serving on … :8000", "serving on http://x :8000") == []
    assert expected_found("serving on … :8000", "serving on\n:8000") != []


def test_marked_blocks_are_found_in_order(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "text\n<!-- doc-test -->\n```bash\necho hi\n```\n```bash\nnot marked\n```\n"
        "<!-- doc-test: expect -->\n```text\nhi\n```\n"
    )
    blocks = marked_blocks(readme)
    assert [(b.kind, b.text) for b in blocks] == [("run", "echo hi"), ("expect", "hi")]
