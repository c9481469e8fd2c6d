"""Where checkpoint and spill files live: a local directory or object storage.

A :class:`FileStore` is a flat namespace of immutable files under one root
(``state/checkpoints``, ``file:///var/lib/x``, ``s3://bucket/prefix``,
``gs://…``, ``az://…``) with four operations: list, read, write atomically and
delete. Names are relative and may contain ``/`` (``spill/<member>/…``).

*Atomic* means a reader sees the whole new file or no file under that name:

* local directories: write ``<name>.tmp``, fsync, rename, fsync the directory;
* object stores (S3, GCS, Azure Blob): one PUT, or a multipart upload that becomes
  visible only when it completes; S3 and GCS list and read after write
  consistently, so a file that ``write_atomic`` returned for is listed by every
  replica.

Object-store calls are retried a bounded number of times (transient network
errors, throttling); the last error is raised as :class:`StoreError`.
Credentials come from the cloud SDK's own environment (``AWS_ACCESS_KEY_ID``,
``AWS_SHARED_CREDENTIALS_FILE``, a web-identity token, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_*``), never from the checkpoint files or the URL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from streammeta.errors import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Protocols whose writes are atomic per object (no temporary name + rename needed).
OBJECT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"})
_RETRIES = (0.2, 1.0, 3.0)  # waits before the 2nd, 3rd and 4th try
_STALE_TMP_S = 3600.0  # a .tmp left by a crash mid-write is removed after this long


class FileStore(Protocol):
    """A root of immutable files addressed by relative names."""

    url: str

    def list(self, prefix: str = "") -> list[str]:
        """Names of the files directly under ``prefix`` (a folder name or "")."""
        ...

    def read(self, name: str) -> bytes:
        """The file's bytes; ``FileNotFoundError`` if there is none (pruned meanwhile)."""
        ...

    def write_atomic(self, name: str, data: bytes) -> None:
        """Publish ``data`` under ``name``: readers see all of it or nothing."""
        ...

    def delete(self, name: str) -> None:
        """Remove ``name``; no error if it is already gone."""
        ...

    def locate(self, name: str) -> str:
        """The file's full path or URL, for messages."""
        ...


def open_store(url: str, options: Mapping[str, Any] | None = None) -> FileStore:
    """The store for a checkpoint location: a plain path or ``file://`` URL is a
    :class:`LocalStore`, any other ``protocol://`` an :class:`FsspecStore`."""
    if url.startswith("file://"):
        return LocalStore(url.removeprefix("file://"))
    if "://" not in url:
        return LocalStore(url)
    return FsspecStore(url, dict(options or {}))


class LocalStore:
    """A directory on a local or network file system (several replicas may share it)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.root = Path(directory)
        self.url = str(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # under a file, a missing mount, no permission
            raise StoreError(f"checkpoint.dir {self.url}: cannot create the directory "
                             f"({exc.strerror or exc})") from None

    def list(self, prefix: str = "") -> list[str]:
        folder = self.root / prefix
        try:
            entries = list(folder.iterdir())
        except FileNotFoundError:
            if prefix:
                return []
            raise StoreError(f"{folder}: the checkpoint directory is gone") from None
        except OSError as exc:
            raise StoreError(f"{folder}: cannot list ({exc})") from None
        names = []
        for entry in entries:
            if entry.name.endswith(".tmp"):
                self._drop_if_stale(entry)
            elif entry.is_file():
                names.append(f"{prefix.rstrip('/')}/{entry.name}" if prefix else entry.name)
        return names

    def read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StoreError(f"{self.root / name}: cannot read ({exc})") from None

    def write_atomic(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def locate(self, name: str) -> str:
        return str(self.root / name)

    @staticmethod
    def _drop_if_stale(tmp: Path) -> None:
        try:
            if time.time() - tmp.stat().st_mtime > _STALE_TMP_S:
                tmp.unlink(missing_ok=True)
        except OSError:  # another replica removed it
            return


class FsspecStore:
    """Object storage (or any fsspec file system) under ``protocol://bucket/prefix``.

    ``options`` are fsspec storage options (for S3: ``endpoint_url``,
    ``client_kwargs``, ``anon``, …)."""

    def __init__(self, url: str, options: dict[str, Any],
                 sleep: Callable[[float], None] = time.sleep) -> None:
        try:
            import fsspec
        except ImportError:  # pragma: no cover - fsspec ships with the package
            raise StoreError("checkpoints in object storage need fsspec") from None
        self.url = url.rstrip("/")
        self.sleep = sleep
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **options)
        except (ImportError, ValueError) as exc:  # e.g. s3fs not installed, bad option
            raise StoreError(f"{url}: cannot open the store ({exc})") from None
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (
            self.fs.protocol,)
        self.atomic_put = bool(OBJECT_PROTOCOLS & set(protocols))

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        for attempt in range(len(_RETRIES) + 1):
            try:
                return call()
            except FileNotFoundError:
                raise
            except Exception as exc:  # botocore/aiohttp raise many types for one outage
                if attempt == len(_RETRIES):
                    raise StoreError(f"{self.url}: {what} failed after {attempt + 1} tries "
                                     f"({type(exc).__name__}: {exc})") from None
                log.warning("%s: %s failed (%s), retrying", self.url, what, exc)
                self.sleep(_RETRIES[attempt])
        raise AssertionError("unreachable")

    def list(self, prefix: str = "") -> list[str]:
        folder = self._path(prefix.rstrip("/"))

        def ls() -> list[str]:
            self.fs.invalidate_cache(folder)  # other replicas write here too
            try:
                entries = self.fs.ls(folder, detail=True)
            except FileNotFoundError:
                return []
            return [e["name"] for e in entries if e.get("type") == "file"]

        base = self.fs._strip_protocol(self.root)
        names = []
        for full in self._retry(f"listing {prefix or '/'}", ls):
            name = self.fs._strip_protocol(full)[len(base):].lstrip("/")
            if not name.endswith(".tmp"):
                names.append(name)
        return names

    def read(self, name: str) -> bytes:
        return self._retry(f"reading {name}", lambda: self.fs.cat_file(self._path(name)))

    def write_atomic(self, name: str, data: bytes) -> None:
        path = self._path(name)
        if self.atomic_put:
            self._retry(f"writing {name}", lambda: self.fs.pipe_file(path, data))
            return

        def via_tmp() -> None:  # a file system without atomic puts (sftp, …): rename
            self.fs.pipe_file(path + ".tmp", data)
            self.fs.mv(path + ".tmp", path)

        self._retry(f"writing {name}", via_tmp)

    def delete(self, name: str) -> None:
        def rm() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self._path(name))

        self._retry(f"deleting {name}", rm)

    def locate(self, name: str) -> str:
        return f"{self.url}/{name}"
