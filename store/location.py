"""Where a store lives: a local folder or a prefix in object storage, as one pyarrow filesystem and a root.

Every reader and writer of a store goes through one :class:`Location`, so ``s3://bucket/prefix`` works
wherever a folder does. pyarrow only (GPU servers and the analysis code use it without duckdb).

Credentials. keygap never reads or passes credentials: pyarrow's S3 filesystem takes them from the standard
AWS chain itself (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, the ~/.aws files and
AWS_PROFILE, an instance or container role). A URI that carries credentials (``s3://KEY:SECRET@bucket``, a
``secret_key=`` query) is refused without echoing it, so a store's name, which is printed and recorded, never
holds a secret; :func:`scrub` removes the chain's secrets from any message as a second guard. The endpoint of
an S3-compatible server (MinIO, a local test server) comes from AWS_ENDPOINT_URL, as for the AWS tools.

Whole-object writes. A local file is written under a hidden temp name, fsynced and renamed (files.py). An
object store has no rename, but it makes an object visible only when its upload completes; so the content
is first made complete in memory and then uploaded in one call under its final name, and an upload that
fails is deleted. (pyarrow's S3 output stream completes an upload when it is closed, even after an error
mid-way: streaming a Parquet writer straight into it could publish half a file.)
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .errors import StoreError, first_line
from .files import atomic_write_bytes, replacing

#: environment variables of the AWS chain whose values are secret (scrub() hides them)
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ACCESS_KEY_ID")
_T = TypeVar("_T")
#: how many times a listing is tried while folders come into being under it (Location._listing)
LISTING_ATTEMPTS = 3
_SECRET_QUERY_WORDS = ("key", "secret", "token", "password", "credential", "signature")


def is_remote(uri: str | os.PathLike) -> bool:
    """True for a URI with a scheme other than file:// (s3://, gs://, ...): a store without local folders."""
    text = str(uri)
    return "://" in text and not text.startswith("file://")


def check_uri(uri: str) -> None:
    """Refuse a store URI that carries credentials; the message does not repeat the URI."""
    if not is_remote(uri):
        return
    parts = urlsplit(uri)
    before_at = uri.split("://", 1)[1].split("?", 1)[0].partition("@")
    # user:secret@bucket; a secret may hold '/', which would end urlsplit's netloc before the '@'
    if "@" in parts.netloc or (before_at[1] and ":" in before_at[0]):
        raise StoreError(
            f"the --store URI names credentials ({parts.scheme}://...@...): keygap takes them from the standard "
            "AWS chain only (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws and AWS_PROFILE, an instance "
            f"role); use {parts.scheme}://BUCKET/PREFIX"
        )
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if any(word in name.lower() for word in _SECRET_QUERY_WORDS):
            raise StoreError(
                f"the --store URI has a query option {name!r} that carries a credential: keygap takes "
                "credentials from the standard AWS chain only (environment, ~/.aws, an instance role)"
            )


def scrub(text: str) -> str:
    """``text`` with the values of the AWS chain's secret environment variables replaced by ``***``."""
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


@dataclass(frozen=True)
class Location:
    """A store's filesystem and root; paths handed to its methods are relative to the root (posix)."""

    uri: str  # as the user named it
    fs: pafs.FileSystem
    root: str  # the root as ``fs`` names it

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        """``parts`` joined under the root; no parts (or "") is the root itself, without a trailing slash
        (a file given as the store must read as that file, not as a folder that is missing)."""
        return posixpath.join(self.root, *[p for p in parts if p])

    def rel(self, path: str) -> str:
        return posixpath.relpath(path, self.root)

    def join(self, *parts: str) -> str:
        """The URI of something inside the store, for messages (``s3://bucket/prefix/runs/x.json``)."""
        return posixpath.join(self.uri, *parts)

    # -- reading ----------------------------------------------------------------------------------------
    def info(self, rel: str) -> pafs.FileInfo:
        return self._call(lambda: self.fs.get_file_info(self.path(rel)), rel)

    def is_file(self, rel: str) -> bool:
        return self.info(rel).type == pafs.FileType.File

    def exists(self, rel: str = "") -> bool:
        return self.info(rel).type != pafs.FileType.NotFound

    def list(self, rel: str = "", recursive: bool = False) -> list[pafs.FileInfo]:
        """The files (not folders) under ``rel``; none when it does not exist."""
        return [i for i in self._listing(rel, recursive) if i.type == pafs.FileType.File]

    def children(self, rel: str = "") -> tuple[str, ...]:
        """The names of the files and folders directly under ``rel``; none when it does not exist."""
        return tuple(i.base_name for i in self._listing(rel, recursive=False))

    def _listing(self, rel: str, recursive: bool) -> Sequence[pafs.FileInfo]:
        """One listing, looked at again when a folder appeared while it was read.

        pyarrow lists a folder first and, when that fails, asks whether the folder exists: one that another
        process creates between the two (two shards creating the same new store) fails the listing with
        FileNotFoundError although ``allow_not_found`` is set. A second look settles it."""
        sel = pafs.FileSelector(self.path(rel), recursive=recursive, allow_not_found=True)
        for _ in range(LISTING_ATTEMPTS - 1):
            try:
                return self._call(lambda: self.fs.get_file_info(sel), rel, missing_ok=True)
            except FileNotFoundError:
                continue
        return self._call(lambda: self.fs.get_file_info(sel), rel)

    def read_bytes(self, rel: str) -> bytes:
        def read() -> bytes:
            with self.fs.open_input_stream(self.path(rel)) as f:
                return f.read()

        return self._call(read, rel, missing_ok=True)

    # -- writing ----------------------------------------------------------------------------------------
    def makedirs(self, rel: str) -> None:
        """Create a folder (and its parents) on a local store; object stores have no folders to create."""
        if self.local:
            os.makedirs(self.path(rel), exist_ok=True)

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a whole file or object: readers see the old content or the new, never part of it."""
        if self.local:
            os.makedirs(posixpath.dirname(self.path(rel)), exist_ok=True)
            atomic_write_bytes(self.path(rel), data)
            return
        self._upload(rel, data)

    def write_parquet(self, rel: str, table: pa.Table, **options: Any) -> int:
        """Write ``table`` as one Parquet file at ``rel``, whole (see the module docstring); returns its size."""
        final = self.path(rel)
        if self.local:
            os.makedirs(posixpath.dirname(final), exist_ok=True)
            with replacing(final) as tmp:
                pq.write_table(table, tmp, **options)
            return os.stat(final).st_size
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **options)
        data = sink.getvalue()
        self._upload(rel, data)
        return data.size

    def delete(self, rel: str) -> None:
        """Remove a file or object; one that is already gone is fine."""
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(
                f"cannot delete {self.join(rel)} ({scrub(first_line(exc))}): check write access to the store"
            ) from None

    def _upload(self, rel: str, data: bytes | pa.Buffer) -> None:
        final = self.path(rel)
        try:
            with self.fs.open_output_stream(final) as f:
                f.write(data)
        except BaseException as exc:
            try:  # the stream completes what it uploaded when it closes: take the partial object back
                self.fs.delete_file(final)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write {self.join(rel)} ({scrub(first_line(exc))}): check write access "
                                 "to the store and the AWS credentials") from None
            raise

    def _call(self, fn: Callable[[], _T], rel: str, missing_ok: bool = False) -> _T:
        """Run a filesystem call; a failure of the store itself (no bucket, no access, no network) becomes
        one StoreError line without secrets. FileNotFoundError passes through when ``missing_ok``."""
        try:
            return fn()
        except FileNotFoundError:
            if missing_ok:
                raise
            raise StoreError(f"{self.join(rel)} does not exist") from None
        except (OSError, pa.ArrowInvalid) as exc:
            hint = (": check the bucket name, the AWS credentials (environment, ~/.aws, instance role) and "
                    "AWS_ENDPOINT_URL for an S3-compatible server") if not self.local else ""
            raise StoreError(f"cannot read {self.join(rel)} ({scrub(first_line(exc))}){hint}") from None


def open_location(uri: str | os.PathLike) -> Location:
    """The Location of a store named by a local path, a file:// URI or an object-store URI (s3://...)."""
    text = str(uri)
    if not is_remote(text):
        local = text[len("file://"):] if text.startswith("file://") else text
        return Location(text, pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(local)))
    check_uri(text)
    try:
        fs, root = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, ValueError, OSError) as exc:
        raise StoreError(f"cannot open the store {scrub(text)} ({scrub(first_line(exc))}): give s3://BUCKET/PREFIX "
                         "(other schemes as pyarrow.fs supports them)") from None
    root = root.rstrip("/")
    if not root:
        raise StoreError(f"{text} names no bucket: give s3://BUCKET/PREFIX")
    return Location(text.rstrip("/"), fs, root)
