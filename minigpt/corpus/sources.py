"""Where a corpus file comes from: explicit path > $MINIGPT_DATA_DIR > user cache > download."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from minigpt.errors import MinigptError
from minigpt.files import atomic_file

DATA_DIR_ENV = "MINIGPT_DATA_DIR"
CACHE_DIR_ENV = "MINIGPT_CACHE_DIR"


def cache_root() -> Path:
    """minigpt's cache: $MINIGPT_CACHE_DIR, else $XDG_CACHE_HOME/minigpt, else ~/.cache/minigpt."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "minigpt"


@dataclass(frozen=True)
class KnownFile:
    """A corpus file with a canonical home: `<data dir>/<name>/<filename>`, maybe downloadable."""

    name: str
    filename: str
    url: str | None = None
    sha256: str | None = None

    @property
    def relative_path(self) -> Path:
        return Path(self.name) / self.filename


def check_readable_file(path: Path, key: str = "data.path") -> Path:
    if not path.exists():
        raise MinigptError(f"{key}: {path} does not exist; pass the path of a text file")
    if not path.is_file():
        raise MinigptError(f"{key}: {path} is not a file; pass the path of a text file")
    if not os.access(path, os.R_OK):
        raise MinigptError(f"{key}: {path} is not readable; check its permissions")
    return path


def resolve_file(explicit: str | os.PathLike | None, known: KnownFile | None) -> Path:
    """The corpus file to read, downloading a known one into the cache when no copy exists."""
    if explicit is not None:
        return check_readable_file(Path(explicit).expanduser())
    if known is None:
        raise MinigptError("data.path is not set; pass the path of a text file")
    candidates = []
    if os.environ.get(DATA_DIR_ENV):
        candidates.append(Path(os.environ[DATA_DIR_ENV]) / known.relative_path)
    cached = cache_root() / known.relative_path
    candidates.append(cached)
    for candidate in candidates:
        if candidate.is_file():
            return check_readable_file(candidate)
    if known.url is None:
        raise MinigptError(
            f"no copy of {known.relative_path} found and it has no public download: pass data.path=FILE, "
            f"set ${DATA_DIR_ENV} so that ${DATA_DIR_ENV}/{known.relative_path} exists, or put it at {cached}"
        )
    download(known, cached)
    return cached


def download(known: KnownFile, destination: Path) -> None:
    """Fetch `known.url` to `destination`, checking its sha256; the file appears only when complete."""
    from tqdm.auto import tqdm  # a dependency of lightning; only needed here

    assert known.url is not None  # callers download only files that have one

    digest = hashlib.sha256()
    try:
        with atomic_file(destination, "wb") as file:
            try:
                with urllib.request.urlopen(known.url, timeout=30) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {known.filename}") as bar:
                        while chunk := response.read(1 << 16):
                            file.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise MinigptError(
                    f"could not download {known.url} ({reason}); provide the file instead: pass data.path=FILE, "
                    f"set ${DATA_DIR_ENV} so that ${DATA_DIR_ENV}/{known.relative_path} exists, "
                    f"or put it at {destination}"
                ) from None
            if known.sha256 and digest.hexdigest() != known.sha256:
                raise ChecksumMismatch(digest.hexdigest())
    except ChecksumMismatch as mismatch:
        raise MinigptError(
            f"download of {known.url} has sha256 {mismatch.args[0]}, expected {known.sha256}; "
            "the file was discarded, try again or provide a copy with data.path"
        ) from None


class ChecksumMismatch(Exception):
    """A download whose bytes are not the ones expected: raised inside the write so it is discarded."""


def not_utf8(
    key: str, path: Path, data: bytes, error: UnicodeDecodeError, offset: int = 0, line: int = 0
) -> MinigptError:
    """The error for a decoding failure in `data`, a block that starts at byte `offset` and line
    `line` of the file: it names the file, the bad byte, its offset and line, and the fix."""
    where = offset + error.start
    lines = line + data.count(b"\n", 0, error.start) + 1
    return MinigptError(
        f"{key}: {path} is not UTF-8 text (bad byte 0x{data[error.start]:02x} at offset {where}, line {lines}); "
        "convert it to UTF-8, or set data.errors to replace or ignore"
    )


def decode_text(data: bytes, path: Path, errors: str = "strict", key: str = "data.path") -> str:
    """Bytes of a corpus file as UTF-8 text; a decoding error names the file, byte offset and line."""
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as error:
        raise not_utf8(key, path, data, error) from None


@dataclass(frozen=True)
class KnownDirectory:
    """A corpus of several split files with a canonical home: `<data dir>/<name>/<files>`."""

    name: str
    filenames: tuple[str, ...]


def resolve_directory(
    explicit: str | os.PathLike | None, known: KnownDirectory, download: Callable[[Path], None] | None = None
) -> Path:
    """The folder holding all of `known.filenames`: explicit > $MINIGPT_DATA_DIR > cache > download.

    A folder that exists but lacks a file is an error rather than a reason to look elsewhere: a
    half-copied corpus should be fixed, not silently replaced by a download.
    """
    if explicit is not None:
        return _complete_directory(Path(explicit).expanduser(), known)
    cached = cache_root() / known.name
    candidates = [Path(os.environ[DATA_DIR_ENV]) / known.name] if os.environ.get(DATA_DIR_ENV) else []
    candidates.append(cached)
    for candidate in candidates:
        if candidate.is_dir():
            return _complete_directory(candidate, known)
    if download is None:
        raise MinigptError(
            f"no copy of {known.name}/ found: pass data.path=FOLDER holding {', '.join(known.filenames)}, "
            f"or set ${DATA_DIR_ENV} so that ${DATA_DIR_ENV}/{known.name}/ holds them"
        )
    download(cached)
    return _complete_directory(cached, known)


def _complete_directory(folder: Path, known: KnownDirectory) -> Path:
    if not folder.is_dir():
        raise MinigptError(f"data.path: {folder} is not a folder; pass the folder holding {', '.join(known.filenames)}")
    for filename in known.filenames:
        if not (folder / filename).is_file():
            raise MinigptError(
                f"data.path: {folder} has no {filename}; {known.name} needs {', '.join(known.filenames)} there "
                "(or point the data module's *_file options at the files you have)"
            )
        check_readable_file(folder / filename)
    return folder
