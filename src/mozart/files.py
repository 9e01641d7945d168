"""Reading token files and writing outputs atomically (readers never see a half-written file)."""

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


def read_text(path: Path) -> str:
    """Read a token file, turning I/O and encoding problems into MozartError."""
    if not path.exists():
        raise MozartError(f"{path}: no such file")
    if path.is_dir():
        raise MozartError(f"{path}: is a directory, not a token file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MozartError(f"{path}: not a text file (not UTF-8)") from None
    except OSError as e:
        raise MozartError(f"{path}: cannot read: {e.strerror or e}") from None
