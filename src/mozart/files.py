"""Atomic file writes: readers never see a half-written output."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import MozartError


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write bytes or text to ``path`` via a temporary file in the same folder and rename,
    so that readers never see a half-written file."""
    p = Path(path)
    if p.is_dir():
        raise MozartError(f"{p}: is a directory")
    if not p.parent.exists():
        raise MozartError(f"{p}: folder {p.parent} does not exist")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
