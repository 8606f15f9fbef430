"""Photos in object storage: s3://, gs://, az:// (any fsspec URL) as inputs and outputs of a batch.

A URL becomes a :class:`Url`: the store's protocol, the path inside it and the storage options of the
command (endpoint, region: never credentials, which come from the store library's usual sources, the
environment, config files or an instance role, on the driver and on every worker). A ``Url`` offers the
few path operations a batch plan needs (name, suffix, parent, ``/``, relative_to), so
:mod:`csr_core.batch` plans local folders and store prefixes alike: same output names, inputs never
overwritten (an output key equal to an input key is refused), existing outputs refused or skipped.

Each output is one ``pipe_file`` call: on S3 a single PUT up to 100 MB (a multipart upload above, which
publishes nothing until it completes), on GCS and Azure an upload that publishes the object at its
end, so a killed writer leaves no partial object. fsspec and the store's library (s3fs, gcsfs, adlfs)
are imported only when a URL is used: the plain local path never loads them.
"""
from __future__ import annotations

import functools
import json
import posixpath
import re
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Iterable, Mapping

from .errors import CsrError, MissingExtra, StorageError, install_command

_URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)", re.S)
#: Query parameters that carry credentials (pre-signed S3 and GCS URLs, Azure SAS tokens).
_SECRET_QUERY = re.compile(r"([?&](?:x-amz-|x-goog-|sig|sv|se|sp|token|signature|credential|access_?key|secret|"
                           r"password|key)[a-z0-9_-]*=)[^&#]*", re.I)
#: Storage-option names that would carry credentials on csr's command line (refused).
_SECRET_OPTION = re.compile(r"key|secret|token|pass|credential|sas|signature|auth", re.I)
#: What to install for a store whose library is missing.
_LIBRARY = {"s3": install_command("cluster"), "gs": "pip install gcsfs", "gcs": "pip install gcsfs",
            "az": "pip install adlfs", "abfs": "pip install adlfs", "abfss": "pip install adlfs"}
_CREDENTIALS = "credentials come from the environment, the store's config files or an instance role"
#: The reads of an object's csr record: a header and XMP packet fit in a block or two (s3fs reads 50 MB by default).
RECORD_BLOCK = 1 << 16


def is_url(text) -> bool:
    return isinstance(text, str) and _URL.fullmatch(text) is not None


def redact(text: str) -> str:
    """``text`` with the user-info of URLs (``//user:secret@``) and credential query values hidden."""
    text = re.sub(r"(://)[^@\s]*:[^@\s]*@", r"\1***@", str(text))  # (secrets may hold '/' and '+')
    return _SECRET_QUERY.sub(r"\1***", text)


def options_from_args(pairs: Iterable[str]) -> dict:
    """``--storage-option KEY=VALUE`` pairs as a dict: dotted keys nest (``client_kwargs.region_name=X``),
    JSON literals (true, 3, null) are parsed, anything else is a string."""
    options: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CsrError(f"--storage-option {redact(pair)}: write it KEY=VALUE (e.g. endpoint_url=https://...)")
        try:
            parsed = json.loads(value)
            value = parsed if not isinstance(parsed, (dict, list)) else value
        except ValueError:
            pass
        *parents, last = key.strip().split(".")
        node = options
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CsrError(f"--storage-option {key}: {part} is given both as a value and as a group")
        node[last] = value
    return options


def check_options(options: Mapping | None) -> str:
    """The storage options as canonical JSON, refusing credentials: csr never takes them as arguments."""
    def walk(node, prefix=""):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if _SECRET_OPTION.search(str(key)):
                raise CsrError(f"storage option {name}: csr takes no credentials as arguments; {_CREDENTIALS}")
            if isinstance(value, Mapping):
                walk(value, f"{name}.")
            elif isinstance(value, str) and (redact(value) != value):
                raise CsrError(f"storage option {name}={redact(value)}: a URL must not hold credentials; "
                               f"{_CREDENTIALS}")

    walk(options or {})
    try:
        return json.dumps(options or {}, sort_keys=True)
    except TypeError as exc:
        raise CsrError(f"storage options must be plain values ({exc})") from None


def location(arg: str, options: str = "{}") -> "str | Url":
    """A command-line path as given, or a :class:`Url` when it is one (``file://`` becomes a local path).

    Refuses (CsrError) a URL holding credentials, an unknown protocol and a store whose library is
    missing (MissingExtra, naming what to install); ``options`` is :func:`check_options`' JSON.
    """
    match = _URL.fullmatch(arg) if isinstance(arg, str) else None
    if match is None:
        return arg
    shown = redact(arg)
    if shown != arg:
        raise CsrError(f"{shown}: a URL must not hold credentials; {_CREDENTIALS}")
    protocol = match.group(1).lower()
    if protocol == "file":
        return match.group(2)
    try:
        import fsspec
    except ImportError:
        raise MissingExtra(f"{shown}: object storage needs fsspec, which is not installed: "
                           f"{install_command('cluster')}") from None
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise CsrError(f"{shown}: unknown storage protocol '{protocol}://' (s3://, gs://, az://, "
                       "or another fsspec protocol)") from None
    except ImportError:
        hint = _LIBRARY.get(protocol, f"install the fsspec package for {protocol}://")
        raise MissingExtra(f"{shown}: {protocol}:// needs its storage library, which is not installed: {hint}") from None
    canonical = cls.protocol if isinstance(cls.protocol, str) else cls.protocol[0]
    path = cls._strip_protocol(arg)
    if not path:
        raise CsrError(f"{shown}: name a bucket (and a prefix), e.g. {protocol}://bucket/photos/")
    return Url(canonical, path, options)


@functools.lru_cache(maxsize=16)
def _filesystem(protocol: str, options: str):
    import fsspec

    return fsspec.filesystem(protocol, **json.loads(options))


@dataclass(frozen=True)
class Url:
    """A file or prefix in a store, with the path operations a batch plan needs."""

    protocol: str   # canonical fsspec protocol: 's3', 'gs', 'abfs', 'memory'...
    path: str       # inside the store, without the protocol: 'bucket/shoot/a.jpg'
    options: str = "{}"  # storage options as JSON (no credentials)
    exists: bool | None = field(default=None, compare=False, repr=False)  # known from a listing

    def __str__(self) -> str:
        return f"{self.protocol}://{self.path}"

    @property
    def fs(self):
        return _filesystem(self.protocol, self.options)

    def _at(self, path: str, exists: bool | None = None) -> "Url":
        return Url(self.protocol, path, self.options, exists)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def parent(self) -> "Url":
        return self._at(posixpath.dirname(self.path))

    def __truediv__(self, rel) -> "Url":
        return self._at(posixpath.join(self.path, rel.as_posix() if hasattr(rel, "as_posix") else str(rel)))

    def with_name(self, name: str) -> "Url":
        return self.parent / name

    def with_suffix(self, suffix: str) -> "Url":
        return self.parent / PurePosixPath(self.name).with_suffix(suffix).name

    def relative_to(self, root: "Url") -> PurePosixPath:
        if not self.path.startswith(root.path.rstrip("/") + "/"):
            raise ValueError(f"{self} is not under {root}")
        return PurePosixPath(self.path[len(root.path.rstrip("/")) + 1:])

    def is_dir(self) -> bool:
        try:
            return self.fs.isdir(self.path)
        except Exception as exc:
            raise _failure(self, exc, "list") from None

    def identity(self) -> tuple[str, str] | None:
        """Like :func:`csr_core.batch.identity`: (protocol, path) of an existing object, else None."""
        exists = self.exists
        if exists is None:
            try:
                exists = self.fs.isfile(self.path)
            except Exception as exc:
                raise _failure(self, exc, "read") from None
        return (self.protocol, self.path) if exists else None

    def made_by_csr(self) -> bool:
        """Like :func:`csr_core.metadata.made_by_csr`: whether the object carries csr's record, read from its
        header and XMP packet in blocks of RECORD_BLOCK bytes, never the whole object. One that cannot be
        read is not csr's."""
        from .metadata import made_by_csr

        try:
            with self.fs.open(self.path, "rb", block_size=RECORD_BLOCK, cache_type="blockcache") as f:
                return made_by_csr(f)
        except Exception:  # noqa: BLE001 -- missing, refused, unreachable: tried, and reported when retouched
            return False

    def read_bytes(self) -> bytes:
        try:
            return self.fs.cat_file(self.path)
        except Exception as exc:
            raise _failure(self, exc, "read") from None

    def write_bytes(self, data: bytes) -> None:
        """Publish ``data`` as this object in one upload (nothing is visible unless it completes)."""
        try:
            self.fs.pipe_file(self.path, data)
        except Exception as exc:
            raise _failure(self, exc, "write") from None


def _failure(url: Url, exc: BaseException, doing: str) -> CsrError:
    if isinstance(exc, CsrError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return StorageError(f"{url}: no such file" if doing == "read" else f"{url}: cannot {doing} (not found)")
    if isinstance(exc, PermissionError):
        return StorageError(f"{url}: cannot {doing}, access denied ({_CREDENTIALS})")
    detail = " ".join(str(exc).split())[:200]
    return StorageError(redact(f"{url}: cannot {doing} ({type(exc).__name__}{': ' + detail if detail else ''})"))


def _check_bucket(url: Url) -> None:
    """Raise StorageError when the bucket (container) of ``url`` is missing or refused: one line for the
    whole batch instead of one per photo."""
    bare = url.path.lstrip("/")  # (a local-like store such as memory:// keeps a leading slash)
    bucket = url.path[:len(url.path) - len(bare)] + bare.split("/", 1)[0]
    top = url._at(bucket)
    try:
        if top.fs.isdir(bucket):
            return
        missing = not top.fs.exists(bucket)
    except Exception as exc:
        raise _failure(top, exc, "list") from None
    if missing:
        raise StorageError(f"{top}: no such bucket (or container), or it is not visible with these credentials")


def _is_image(name: str) -> bool:
    from .image_io import SUPPORTED_EXTENSIONS

    return posixpath.splitext(name)[1].lower() in SUPPORTED_EXTENSIONS and not name.startswith(".")


def _safe(rel: str) -> bool:
    """A key below a prefix maps to an output name only when it has no empty, '.' or '..' segment (a
    hostile key must not name a file outside the output folder)."""
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def expand(url: Url, output) -> tuple[list[tuple[Url, Url]], list[str], str | None]:
    """(file, root) pairs for a store URL (a file, a prefix searched recursively, or a glob), problem lines
    and what the URL is ('file', 'folder', 'pattern'; None if missing), like
    :func:`csr_core.batch.expand_inputs` for a local path, which leaves out the images csr wrote. The prefix
    ``output`` (a Url in the same store), when it lies under ``url``, is not searched, nor are hidden
    sub-folders (names starting with a dot: a trash, a thumbnail cache), as locally."""
    from glob import has_magic

    fs = url.fs
    try:
        if has_magic(url.path):
            files = [p for p, info in fs.glob(url.path, detail=True).items() if info.get("type") == "file"]
            roots = [posixpath.dirname(p) for p in files]
            parts = url.path.split("/")
            top, kind = "/".join(parts[:next(i for i, part in enumerate(parts) if has_magic(part))]), "pattern"
        else:
            info = fs.info(url.path)
            if info.get("type") == "file":
                files, roots, kind = [url.path], [posixpath.dirname(url.path)], "file"
            else:
                files = fs.find(url.path)
                roots, top, kind = [url.path] * len(files), url.path, "folder"
    except FileNotFoundError:
        _check_bucket(url)
        return [], [f"{url}: no such file or folder"], None
    except Exception as exc:
        raise _failure(url, exc, "list") from None
    prune = (output.path.rstrip("/") + "/" if isinstance(output, Url) and output.protocol == url.protocol
             and output.options == url.options else None)
    found, problems = [], []
    for path, root in sorted(zip(files, roots)):
        if kind == "folder" and prune and path.startswith(prune):
            continue
        if kind != "file" and not _is_image(posixpath.basename(path)):
            continue  # (a file named on its own is tried whatever its name, as locally)
        if not _safe(path[len(root) + 1:]):
            problems.append(f"{url._at(path)}: skipped, its name has an empty, '.' or '..' part")
            continue
        if kind != "file" and any(d.startswith(".") for d in posixpath.dirname(path[len(top) + 1:]).split("/")):
            continue  # in a hidden sub-folder
        found.append((url._at(path, exists=True), url._at(root)))
    return found, problems, kind


def _listing_key(path: str) -> tuple[str, ...]:
    """The bucket and top folder of an output key (the bucket alone for a key at its root): outputs in
    different top folders are listed apart, so that a run over two never lists the whole bucket."""
    parts = path.strip("/").split("/")
    return tuple(parts[:2]) if len(parts) > 2 else tuple(parts[:1])


def list_outputs(jobs: list) -> None:
    """Mark whether each store output of ``jobs`` exists, from one listing of their common prefix per
    bucket and top folder (one request per thousand keys instead of one per photo; the root of a bucket
    is listed one level deep); a missing or refused bucket raises StorageError before any work."""
    groups: dict = {}
    for job in jobs:
        if isinstance(job.dest, Url) and job.dest.exists is None:
            dest = job.dest
            groups.setdefault((dest.protocol, dest.options, _listing_key(dest.path)), []).append(job)
    checked = set()
    for (protocol, options, key), group in groups.items():
        first = group[0].dest
        if (protocol, options, key[0]) not in checked:
            _check_bucket(first)
            checked.add((protocol, options, key[0]))
        common = posixpath.commonpath([job.dest.path for job in group])
        try:
            existing = set(first.fs.find(common, maxdepth=1 if len(key) == 1 else None))
        except FileNotFoundError:
            existing = set()
        except Exception as exc:
            raise _failure(first._at(common), exc, "list") from None
        for job in group:
            job.dest = replace(job.dest, exists=job.dest.path in existing)
