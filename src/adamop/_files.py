"""Writing files atomically: a reader, or a crash, sees the old file or the new one, not a part."""
from __future__ import annotations

import os
import secrets
import stat
from typing import Any, BinaryIO, Callable


def write_atomically(path: Any, content: bytes | Callable[[BinaryIO], Any]) -> None:
    """Write ``content`` (bytes, or a function that writes into the open file) to ``path``
    through a temporary file in the same folder and ``os.replace``.

    Nothing touches ``path`` until the new content is complete and on disk, so a failure at any
    point leaves an existing file as it was and no temporary file behind. A symbolic link is
    followed (the file it names is replaced, as ``open(path, "w")`` would write it), and an
    existing file keeps its permission bits; a new one gets ``open()``'s (0o666 less the umask).

    Raises:
        TypeError: ``path`` is not a str or os.PathLike.
        OSError: the folder cannot be written.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a file path (str or os.PathLike), got {type(path).__name__}")
    target = os.path.realpath(os.fspath(path))
    folder, name = os.path.split(target)
    while True:
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
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
