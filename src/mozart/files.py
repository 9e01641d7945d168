"""Reading token files and writing outputs atomically (readers never see a half-written file)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import MozartError
from .tokens import check_text_size


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write bytes or text to ``path`` via a temporary file in the same folder and rename,
    so that readers never see a half-written file."""
    p = Path(path)
    if p.is_dir():
        raise MozartError(f"{p}: is a directory")
    make_parents(p)
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


def make_parents(path: Path) -> None:
    """Create the missing folders above ``path`` (as ``mkdir -p`` would), with a clean error
    when something in the way is a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise MozartError(f"{path}: a part of {path.parent} exists and is not a folder") from None


def check_output_dir(path: Path, marker: str, force: bool = False, flag: str | None = "--force") -> None:
    """Refuse an output folder a command should not write into: a file, or a non-empty folder
    without ``marker`` (the file that shows this command made it) unless ``force``.  Nothing is
    created here: commands create their folder (and its parents) when they first write.
    ``flag`` names the option that allows it (None: nothing does)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MozartError(f"{path}: exists and is not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise MozartError(f"{path}: {parent} exists and is not a folder")
            break
    if path.is_dir() and not force and not (path / marker).exists() and any(path.iterdir()):
        raise MozartError(f"{path}: exists, is not empty and was not made by this command (no {marker}); "
                          "choose another -o" + (f", or pass {flag} to write into it" if flag else ""))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_dataset_dir(path: Path) -> None:
    """Raise MozartError unless ``path`` is a dataset folder (``mozart dataset`` writes its stats.json)."""
    if not (Path(path) / "stats.json").is_file():
        raise MozartError(f"{path}: not a dataset (no stats.json); build one with `mozart dataset`")


def check_regular_file(path: Path, kind: str) -> None:
    """Raise MozartError unless ``path`` is a regular file: missing, a folder, a FIFO or device
    (whose read would block or never end), or a path we may not look at, each in one line."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise MozartError(f"{path}: no such file") from None
    except OSError as e:  # e.g. permission denied on a folder above it
        raise MozartError(f"{path}: cannot read: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        raise MozartError(f"{path}: is a directory, not {kind}")
    if not stat.S_ISREG(mode):
        raise MozartError(f"{path}: not a regular file")


def read_text(path: Path) -> str:
    """Read a token file, turning I/O and encoding problems into MozartError."""
    check_regular_file(path, "a token file")
    try:
        check_text_size(path.stat().st_size, str(path))  # before reading it whole
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MozartError(f"{path}: not a text file (not UTF-8)") from None
    except OSError as e:
        raise MozartError(f"{path}: cannot read: {e.strerror or e}") from None
