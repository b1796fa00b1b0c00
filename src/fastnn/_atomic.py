"""Atomic file writes, shared by every file fastnn writes (models, checkpoints, JSON).

A file is written to a temporary file in the target's folder, flushed to disk
(``fsync``), then ``os.replace``-d over the target: a crash or an error
mid-write leaves the previous file intact and no temporary file behind. The
new file gets the permissions a plain ``open(path, "w")`` would give (the old
file's, else 0666 less the umask), not ``mkstemp``'s 0600.
"""
import contextlib
import json
import os
import tempfile
import threading

_UMASK_LOCK = threading.Lock()


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {path!r}")
    if not os.fspath(path):
        raise ValueError("path must not be empty")
    return os.fspath(path)


def _umask():
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        umask = os.umask(0o022)
        os.umask(umask)
    return umask


def file_mode(path):
    """The target's current permissions, or 0o666 less the umask for a new file."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


def folder_mode():
    """The permissions ``os.mkdir`` gives a new folder: 0o777 less the umask."""
    return 0o777 & ~_umask()


def check_target(path, what=""):
    """Raise, naming ``path`` (``what``: how the caller calls it, e.g.
    ``"--json "``), unless a file can be written there: IsADirectoryError when
    it is a folder, FileNotFoundError when its folder does not exist,
    NotADirectoryError when that "folder" is a file. Callers check a path
    early with it (before minutes of work); :func:`atomic_open` checks again."""
    path = _check_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    where = f"cannot write {what}{path!r}"
    if os.path.isdir(path):
        raise IsADirectoryError(f"{where}: it is a folder")
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise NotADirectoryError(f"{where}: {folder!r} is not a folder")
        raise FileNotFoundError(f"{where}: its folder does not exist")
    return path


@contextlib.contextmanager
def atomic_open(path, mode="wb", encoding=None):
    """A file object (``mode`` "wb" or "w") whose contents replace ``path``
    atomically when the ``with`` block ends without an exception."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = check_target(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fastnn-", suffix=".tmp")
    except OSError as exc:  # (permissions, ...) named by the target, not the temporary file
        raise type(exc)(exc.errno, f"cannot write {path!r}: {exc.strerror}") from None
    try:
        f = os.fdopen(fd, mode, encoding=encoding if mode == "w" else None)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with f:
            # mkstemp makes the file 0600; give it the mode a plain open() would
            os.chmod(tmp, file_mode(path))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path, text, encoding="utf-8"):
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)


def atomic_write_json(path, obj, **dump_kw):
    """``json.dump(obj, f, **dump_kw)`` into ``path``, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, **dump_kw)


def exchange(a, b):
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``):
    True when swapped, False where the platform or file system cannot (the
    caller then renames in two steps); other errors raise ``OSError``."""
    import ctypes
    import errno
    import sys
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))
