"""fsspec URLs, checksums and write-then-publish.

A dataset, capture set or checkpoint *exists* only once its card/manifest is written, last.
Readers call `require_published` and ignore folders without one. Local paths and any fsspec URL
(`s3://`, `memory://`, ...) work the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from poseops.errors import DataError


def filesystem(url: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path inside it) for a local path or an fsspec URL."""
    return url_to_fs(str(url))


def join(url: str | os.PathLike, *parts: str) -> str:
    """Join path parts onto a URL or local path with '/'."""
    base = str(url).rstrip("/")
    return "/".join([base, *[p.strip("/") for p in parts]])


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(url: str | os.PathLike, chunk: int = 1 << 20) -> str:
    fs, path = filesystem(url)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_bytes_atomic(url: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers never see half of it (local: temp file + rename)."""
    fs, path = filesystem(url)
    if isinstance(fs, LocalFileSystem):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    else:  # object stores write an object whole on close
        fs.makedirs(fs._parent(path), exist_ok=True)
        with fs.open(path, "wb") as f:
            f.write(data)


def write_json_atomic(url: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(url, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(url: str | os.PathLike) -> Any:
    fs, path = filesystem(url)
    try:
        with fs.open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError as exc:
        raise DataError(f"{url}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{url}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def exists(url: str | os.PathLike) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def require_published(folder: str | os.PathLike, card_name: str) -> dict:
    """The card of a published folder; a folder without one does not exist for readers."""
    card_url = join(folder, card_name)
    if not exists(card_url):
        raise DataError(
            f"{folder}: no {card_name}, so nothing is published there (incomplete or never written)"
        )
    return read_json(card_url)


def clear(url: str | os.PathLike) -> None:
    """Remove a folder or file if present (used before re-publishing)."""
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)
