"""Writing files atomically: a reader, or a crash, sees the old file or the new one, not a part."""
from __future__ import annotations

import os
import secrets
import stat
from typing import Any


def write_atomically(path: Any, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Nothing touches ``path`` until the new content is complete and on disk, so a failure leaves an
    existing file as it was. A symbolic link is followed (the file it names is replaced, as
    ``open(path, "w")`` would write it), and an existing file keeps its permission bits.

    Raises:
        TypeError: ``path`` is not a str or os.PathLike.
        OSError: the folder cannot be written (the temporary file is removed).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a file path (str or os.PathLike), got {type(path).__name__}")
    target = os.path.realpath(os.fspath(path))
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    # 0o666 under the umask: the mode open(path, "w") gives a new file (mkstemp would give 0o600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        except FileNotFoundError:
            pass
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
