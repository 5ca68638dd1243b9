"""The few file operations the store's lock protocol (store/lock.py) is built from, on a folder or on S3.

Why a module of its own: the protocol needs an exclusive create, a refreshable age and a clock of the
storage, and a local file system and an object store give them differently.

- A folder (local or NFS): ``O_CREAT | O_EXCL`` creates, ``utime`` refreshes the modification time, a file
  written now tells the file system's clock, and an advisory ``flock`` on ``locks/.guard`` serialises takers.
- An object store (S3 and compatibles), read through pyarrow like the rest of the store: a conditional PUT
  (``If-None-Match: *``) creates an object only if none exists under that name (S3 has honoured it since
  August 2024; so do MinIO and moto); the heartbeat rewrites the object (a new Last-Modified time) and
  releasing or breaking a lock deletes it, both only ``If-Match`` the ETag this process wrote or judged, so
  neither can touch a lock another process took meanwhile; an object written now tells the server's clock.
  There is no guard to serialise takers: two conflicting takers starting at the same instant may both back
  off (``--wait`` retries after a random pause; without it both are refused), but they can never both
  succeed. These conditional requests go through the AWS SDK for Python (boto3, ``pip install
  'keygap[s3]'``), as pyarrow's filesystem has none; it takes the endpoint, region and credentials from the
  same AWS chain as pyarrow.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow.fs as pafs

from .errors import StoreError, first_line
from .location import Location, open_location, scrub

LOCKS_DIR = "locks"


class LockFolder:
    """``STORE/locks/`` on a local or shared file system."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.dir = Path(root) / LOCKS_DIR

    def where(self, name: str) -> Path | str:
        """What a message names: the lock file's path."""
        return self.dir / name

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def create(self, name: str, data: bytes) -> bool:
        """Create ``name`` holding ``data`` unless it exists (False then); a partly written file is removed."""
        path = self.dir / name
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return True

    def read(self, name: str) -> bytes | None:
        try:
            return (self.dir / name).read_bytes()
        except OSError:
            return None

    def delete(self, name: str) -> None:
        (self.dir / name).unlink(missing_ok=True)

    def remove_if(self, name: str, still: Callable[[bytes | None], bool]) -> bool:
        """Delete ``name`` if ``still(its content)`` holds; True if deleted. On a folder another taker could
        rewrite it between the check and the unlink: lock.py's ``.breaking`` guard covers that window."""
        if not still(self.read(name)):
            return False
        (self.dir / name).unlink(missing_ok=True)
        return True

    def touch(self, name: str, data: bytes) -> None:
        """Refresh the modification time (the heartbeat); ``data`` is the content it already has."""
        os.utime(self.dir / name)

    def mtime(self, name: str) -> float:
        """Modification time in seconds; FileNotFoundError when it is gone."""
        return (self.dir / name).stat().st_mtime

    def now(self) -> float:
        """The current time by the clock of the file system holding the folder (a file written now)."""
        probe = self.dir / f".probe-{os.getpid()}-{time.monotonic_ns()}"
        try:
            probe.write_bytes(b"")
            return probe.stat().st_mtime
        except OSError:
            return time.time()
        finally:
            probe.unlink(missing_ok=True)

    def names(self) -> list[str]:
        """The lock files, sorted."""
        return sorted(p.name for p in self.dir.glob("*.lock")) if self.dir.is_dir() else []

    @contextlib.contextmanager
    def serialised(self) -> Iterator[None]:
        """Hold the folder's taking guard: one taker at a time looks and creates (see store/lock.py)."""
        try:
            import fcntl
        except ImportError:  # not a POSIX system: create-then-check alone still never admits two writers
            yield
            return
        fd = os.open(self.dir / ".guard", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass  # a file system without advisory locks: as above
            yield
        finally:
            os.close(fd)  # releases the flock


class ObjectLockFolder(LockFolder):
    """``PREFIX/locks/`` in an S3 bucket (see the module docstring), through the AWS SDK (boto3)."""

    def __init__(self, location: Location) -> None:
        self.location = location
        bucket, _, prefix = location.root.partition("/")
        self.bucket, self.prefix = bucket, posixpath.join(prefix, LOCKS_DIR) if prefix else LOCKS_DIR
        self._client: Any = None
        self._mine: dict[str, str] = {}  # name -> ETag of the object this process created

    def where(self, name: str) -> str:
        return self.location.join(LOCKS_DIR, name)

    def ensure(self) -> None:
        self.client()  # fails now, in one line, when boto3 is missing

    def create(self, name: str, data: bytes) -> bool:
        try:
            reply = self._call(self.client().put_object, name, Body=data, IfNoneMatch="*")
        except _Refused:
            return False  # it exists, or another taker is creating it this instant
        self._mine[name] = reply["ETag"]
        return True

    def read(self, name: str) -> bytes | None:
        try:  # reading goes through pyarrow, so `keygap info` lists the locks without boto3
            return self.location.read_bytes(posixpath.join(LOCKS_DIR, name))
        except (OSError, StoreError):
            return None

    def delete(self, name: str) -> None:
        try:
            self._call(self.client().delete_object, name)
        except _Refused:
            pass

    def remove_if(self, name: str, still: Callable[[bytes | None], bool]) -> bool:
        data, etag = self._get(name)
        if data is None or not still(data):
            return False
        try:  # If-Match: only the version just read, never one another taker wrote since
            self._call(self.client().delete_object, name, IfMatch=etag)
        except _Refused:
            return False
        self._mine.pop(name, None)
        return True

    def touch(self, name: str, data: bytes) -> None:
        etag = self._mine.get(name)
        if etag is None:
            return
        try:  # If-Match: a heartbeat never overwrites a lock another process took over meanwhile
            self._mine[name] = self._call(self.client().put_object, name, Body=data, IfMatch=etag)["ETag"]
        except _Refused:
            self._mine.pop(name, None)  # lost: verify() reports it

    def mtime(self, name: str) -> float:
        info = self.location.info(posixpath.join(LOCKS_DIR, name))
        if info.type == pafs.FileType.NotFound or info.mtime is None:
            raise FileNotFoundError(self.where(name))
        return float(info.mtime.timestamp())

    def now(self) -> float:
        probe = f".probe-{os.getpid()}-{time.monotonic_ns()}"
        try:
            self._call(self.client().put_object, probe, Body=b"")
            try:
                return self.mtime(probe)
            finally:
                self.delete(probe)
        except (OSError, StoreError):
            return time.time()

    def names(self) -> list[str]:
        return sorted(i.base_name for i in self.location.list(LOCKS_DIR) if i.base_name.endswith(".lock"))

    @contextlib.contextmanager
    def serialised(self) -> Iterator[None]:
        yield  # no guard on an object store (see the module docstring)

    def client(self) -> Any:
        """The boto3 S3 client, configured like pyarrow's filesystem: the AWS chain, plus the URI's options."""
        if self._client is None:
            try:
                import boto3
            except ImportError:
                raise StoreError(
                    "writing to an s3:// store needs boto3 for its lock files: pip install 'keygap[s3]'"
                ) from None
            options = dict(parse_qsl(urlsplit(self.location.uri).query))
            kwargs: dict[str, str] = {}
            if options.get("endpoint_override"):
                scheme = options.get("scheme", "https")
                endpoint = options["endpoint_override"]
                kwargs["endpoint_url"] = endpoint if "://" in endpoint else f"{scheme}://{endpoint}"
            if options.get("region"):
                kwargs["region_name"] = options["region"]
            self._client = boto3.session.Session().client("s3", **kwargs)  # a session of its own: thread-safe
        return self._client

    def _get(self, name: str) -> tuple[bytes | None, str | None]:
        try:
            reply = self._call(self.client().get_object, name)
        except _Refused:
            return None, None
        return reply["Body"].read(), reply["ETag"]

    def _call(self, fn: Callable[..., Any], name: str, **kwargs: Any) -> Any:
        """One S3 request on ``locks/name``: a failed condition or a missing object raises _Refused, any other
        failure one OSError line without secrets."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, Key=f"{self.prefix}/{name}", **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412", "409"):
                raise _Refused(code) from None
            raise OSError(scrub(first_line(exc))) from None
        except BotoCoreError as exc:
            raise OSError(scrub(first_line(exc))) from None


class _Refused(Exception):
    """A conditional request whose condition failed, or an object that is not there."""


def lock_folder(root: str | os.PathLike | Location) -> LockFolder:
    """The lock folder of the store at ``root`` (a path, a URI or a Location)."""
    location = root if isinstance(root, Location) else open_location(root)
    return LockFolder(location.root) if location.local else ObjectLockFolder(location)
