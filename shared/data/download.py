"""Download TLC monthly files from the public URL into a local cache.

Files are written to a temp file in the cache folder and renamed into place only once complete
and recognised as parquet, so an interrupted download never leaves a half file that a later run
would trust.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from shared.errors import DataSourceError

logger = logging.getLogger(__name__)

PARQUET_MAGIC = b"PAR1"
_CHUNK = 1 << 20


def month_file_name(taxi: str, month: str) -> str:
    """``yellow_tripdata_2019-01.parquet``: the TLC's own naming, used in URLs and folders."""
    return f"{taxi}_tripdata_{month}.parquet"


def month_url(base_url: str, taxi: str, month: str) -> str:
    return f"{base_url.rstrip('/')}/{month_file_name(taxi, month)}"


def _looks_like_parquet(path: Path) -> bool:
    size = path.stat().st_size
    if size < 12:
        return False
    with path.open("rb") as fh:
        head = fh.read(4)
        fh.seek(-4, os.SEEK_END)
        tail = fh.read(4)
    return head == PARQUET_MAGIC and tail == PARQUET_MAGIC


def download_month(
    base_url: str, taxi: str, month: str, cache_dir: Path, timeout_s: float = 60.0
) -> Path:
    """Return the cached file for ``taxi``/``month``, downloading it first if needed."""
    if not base_url.startswith(("http://", "https://")):
        raise DataSourceError(f"{base_url}: the TLC base URL must be http(s)")
    target = cache_dir / month_file_name(taxi, month)
    if target.exists():
        logger.info("using cached %s", target)
        return target
    url = month_url(base_url, taxi, month)
    cache_dir.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s", url)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=cache_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - scheme checked
                    shutil.copyfileobj(response, out, _CHUNK)
            except urllib.error.HTTPError as exc:
                raise DataSourceError(
                    f"{url}: HTTP {exc.code} {exc.reason} (is {month} published for {taxi} taxis?)"
                ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DataSourceError(
                    f"{url}: cannot download ({reason}). If this machine is offline, pass a local "
                    "file or folder, or generate data with `taxi-mlops data generate`."
                ) from None
            out.flush()
            os.fsync(out.fileno())
        if not _looks_like_parquet(tmp):
            raise DataSourceError(f"{url}: the server answered, but not with a parquet file")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("saved %s (%d bytes)", target, target.stat().st_size)
    return target
