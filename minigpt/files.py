"""Files written all or nothing, and folders checked for writing before any work starts.

`atomic_file(path)` is the one way minigpt writes a file that someone may read while it is being
written or that a crash may interrupt (checkpoints, downloads, cached tokenizers, sweep reports):
the bytes go to a hidden temporary file beside `path`, are flushed to disk, and replace `path`
with one rename, which the OS makes atomic within a folder. A reader sees the old file or the
whole new one; an interrupted write leaves only the temporary file, which carries its writer's
process id so that a later run can tell it from a write in progress (`remove_stale_partials`).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from minigpt.errors import MinigptError

PARTIAL_SUFFIX = ".partial"
# .<target name>.<writer pid>.<random>.partial
PARTIAL_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[^.]+\.partial$")


@contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "w", **options: Any) -> Iterator[IO[Any]]:
    """A file object whose content replaces `path` when the block ends without an exception;
    on an exception nothing changes at `path`. `mode` is "w" (text, UTF-8 unless `options` say
    otherwise) or "wb"."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=PARTIAL_SUFFIX
    )
    if "b" not in mode:
        options.setdefault("encoding", "utf-8")
    try:
        with os.fdopen(handle, mode, **options) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        # mkstemp makes the file private; what minigpt writes is as readable as any file the user writes.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_file(path) as file:
        file.write(text)


def process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete the temporary files in `folder` of writes whose process is gone (a crash or a kill
    interrupted them); the paths removed."""
    removed = []
    for partial in folder.glob(f".*{PARTIAL_SUFFIX}"):
        match = PARTIAL_NAME.match(partial.name)
        if match is None or process_is_alive(int(match["pid"])):
            continue
        partial.unlink(missing_ok=True)
        removed.append(partial)
    return removed


def check_writable(folder: Path, key: str, fix: str = "pass a writable folder with --trainer.default_root_dir") -> None:
    """Create `folder`, and fail before any work, not at the first checkpoint, when it cannot be
    written."""
    # A file in the way says "File exists" or "Not a directory" depending on where it stands: name it.
    in_the_way = next((path for path in (folder, *folder.parents) if path.exists() and not path.is_dir()), None)
    if in_the_way is not None:
        raise MinigptError(f"{key}: cannot write run output to {folder}: {in_the_way} is a file, not a folder; {fix}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise MinigptError(f"{key}: cannot write run output to {folder} ({error.strerror or error}); {fix}") from None
