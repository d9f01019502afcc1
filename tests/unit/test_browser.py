"""The browser check's start-up: a chromium that fails says why (its stderr), after one retry in
a new profile; a real chromium is driven in tests/integration/test_compare.py."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from taxi_mlops import browser


def _fake_chromium(tmp_path: Path, body: str) -> str:
    binary = tmp_path / "chromium"
    binary.write_text(f"#!/bin/sh\n{body}\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return str(binary)


def test_a_chromium_that_exits_is_retried_once_and_its_stderr_is_in_the_error(
    tmp_path: Path,
) -> None:
    count = tmp_path / "starts"
    fake = _fake_chromium(tmp_path, f'echo start >> {count}\necho "no usable /dev/shm" >&2\nexit 3')
    with pytest.raises(browser.BrowserError, match=r"exited with 3.*no usable /dev/shm"):
        browser.check_page(tmp_path / "page.html", tmp_path / "shot.png", chromium=fake)
    assert count.read_text().count("start") == browser.START_ATTEMPTS == 2


def test_a_chromium_that_never_listens_times_out_with_a_clear_error(tmp_path: Path) -> None:
    fake = _fake_chromium(tmp_path, 'echo "waiting on something" >&2\nexec sleep 60')
    with pytest.raises(browser.BrowserError, match=r"DevTools port within 1 s.*waiting on"):
        browser.check_page(tmp_path / "p.html", tmp_path / "s.png", chromium=fake, timeout_s=1)


def test_chromium_runs_without_a_session_bus(tmp_path: Path) -> None:
    seen = tmp_path / "env"
    fake = _fake_chromium(tmp_path, f'echo "$DBUS_SESSION_BUS_ADDRESS" > {seen}\nexit 1')
    with pytest.raises(browser.BrowserError):
        browser.check_page(tmp_path / "p.html", tmp_path / "s.png", chromium=fake)
    assert seen.read_text().strip() == "disabled:"
