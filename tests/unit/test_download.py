"""The TLC download path, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.data.download import download_month
from shared.data.load import load_month
from shared.errors import DataSourceError
from shared.services import free_port
from tests.factories import trips
from tests.local_http import serving


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []  # noqa: RUF012 - shared log across handler instances

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        _Handler.requests.append(self.path)
        if self.path.endswith("broken.parquet") or "2019-09" in self.path:
            body = b"<html>not parquet</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@pytest.fixture
def tlc_server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "site" / "trip-data"
    root.mkdir(parents=True)
    trips(20, prefix="tpep_").to_parquet(root / "yellow_tripdata_2019-01.parquet")
    trips(20, prefix="lpep_").to_parquet(root / "green_tripdata_2019-01.parquet")
    _Handler.requests = []
    with serving(functools.partial(_Handler, directory=str(tmp_path / "site"))) as url:
        yield f"{url}/trip-data"


def test_download_caches_and_loads(tlc_server: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = download_month(tlc_server, "yellow", "2019-01", cache)
    assert path == cache / "yellow_tripdata_2019-01.parquet"
    assert download_month(tlc_server, "yellow", "2019-01", cache) == path
    assert _Handler.requests.count("/trip-data/yellow_tripdata_2019-01.parquet") == 1
    assert not list(cache.glob(".*part"))


def test_url_source_through_load_month(tlc_server: str, tmp_path: Path) -> None:
    loaded = load_month(tlc_server, "2019-01", "green", cache_dir=tmp_path / "c")
    assert loaded.taxi == "green"
    assert len(loaded.frame) == 20


def test_missing_month_is_a_clear_http_error(tlc_server: str, tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"HTTP 404 .*is 2030-01 published"):
        download_month(tlc_server, "yellow", "2030-01", tmp_path / "c")
    assert not list((tmp_path / "c").iterdir())


def test_non_parquet_answer_leaves_no_file(tlc_server: str, tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="not with a parquet file"):
        download_month(tlc_server, "yellow", "2019-09", tmp_path / "c")
    assert not list((tmp_path / "c").iterdir())


def test_offline_is_a_clear_error(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/trip-data"
    with pytest.raises(DataSourceError, match=r"cannot download .*offline"):
        download_month(dead, "yellow", "2019-01", tmp_path / "c", timeout_s=5)


def test_only_http_urls(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="must be http"):
        download_month("file:///etc", "yellow", "2019-01", tmp_path)
