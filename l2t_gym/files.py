"""Files the package writes: whole or not at all, and checked when they are read back.

Every file l2t-gym writes (teacher files, REINFORCE checkpoints, ``training.json``, reports,
CSVs, plots) goes through :func:`atomic_open` or its shortcuts (:func:`write_bytes`,
:func:`write_text`, :func:`save_figure`): the bytes go to a temporary
file in the target's folder, are flushed and fsynced, and only then renamed over the target
(``os.replace``, atomic on POSIX and Windows). A process killed part way leaves the old file (or
none) and at worst a hidden ``.NAME.*.tmp`` beside it, never a half-written ``NAME``.

Files the package loads back carry a SHA-256 of what they hold. :func:`seal` and :func:`unseal`
put a payload behind a two-line header that names its kind and its digest (the checkpoints use
them; teacher files keep theirs in the safetensors metadata, see
:mod:`l2t_gym.teachers.bernoulli`). A file that fails its check raises :class:`DamagedFileError`.

This module imports nothing from the package, so any room may use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import secrets
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")
_DIGEST_LINE = re.compile(rb"sha256:([0-9a-f]{64})")


class DamagedFileError(ValueError):
    """A file is damaged (its checksum or structure is wrong) or was not written by l2t-gym.

    A ``ValueError``, so code that catches bad input already catches it.

    :param path: the file (kept as ``self.path``).
    :param reason: what is wrong with it (kept as ``self.reason``).
    :param what: the kind of file the message names, e.g. "teacher file" or "checkpoint".
    """

    def __init__(self, path: str | os.PathLike, reason: str, what: str = "file") -> None:
        self.path, self.reason = os.fspath(path), reason
        super().__init__(f"{self.path!r} is damaged or not an l2t-gym {what}: {reason}")


# -- writing -------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    If the block raises (or the process dies), ``path`` keeps its old contents and the
    temporary file is removed (after a kill it may stay, hidden, under a name that never
    matches ``path``). The new file gets the old one's permissions, or those a plain ``open``
    would give.

    :param path: the file to write; its folder must exist.
    :param mode: "wb" or "w" (text, UTF-8 unless ``encoding`` says otherwise).
    :param encoding: text mode's encoding.
    :param newline: as for :func:`open` (the csv module wants "").
    :return: a context manager that yields the open temporary file.
    :raises ValueError: for a mode other than "wb" or "w".
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode 'wb' or 'w', got {mode!r}")
    path = Path(path)
    fd, tmp = _temporary_beside(path)
    try:
        if mode == "w":
            f = os.fdopen(fd, mode, encoding=encoding or "utf-8", newline=newline)
        else:
            f = os.fdopen(fd, mode)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`).

    :param path: the file; its folder must exist.
    :param data: its whole contents.
    """
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically (see :func:`atomic_open`).

    :param path: the file; its folder must exist.
    :param text: its whole contents.
    """
    with atomic_open(path, "w") as f:
        f.write(text)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int) -> None:
    """Save a matplotlib figure atomically, in the format its suffix names (PNG without one).

    :param fig: a ``matplotlib.figure.Figure``.
    :param path: the file; its folder must exist.
    :param dpi: its resolution.
    """
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)


def _temporary_beside(path: Path) -> tuple[int, str]:
    # Same folder, so os.replace never crosses file systems; a leading dot and a random part,
    # so no glob for the target (checkpoint-*.pt) ever matches it and writers never collide.
    # os.open's 0o666 goes through the umask, as a plain open() would (mkstemp gives 0o600).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        with contextlib.suppress(OSError):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # keep a replaced file's mode
        return fd, tmp


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself survive a power cut. Not possible everywhere (Windows cannot open
    # a folder), and the file is whole either way, so a failure here is not an error.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- checking ------------------------------------------------------------------------------------
def sha256_hex(chunks: Iterable[bytes]) -> str:
    """The SHA-256 of the concatenated ``chunks``, as 64 lowercase hex digits."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def seal(kind: str, payload: bytes) -> bytes:
    """``payload`` behind a header naming its ``kind`` and its SHA-256.

    The layout is two text lines, ``<kind>`` and ``sha256:<64 hex digits>``, then the payload's
    bytes. Every byte of the result is covered: a change to the header breaks the kind or the
    digest, a change to the payload breaks the match.

    :param kind: one line of ASCII naming the format and its version, e.g.
        ``"l2t-gym checkpoint 2"``.
    :param payload: the bytes to protect.
    :return: the sealed bytes, for :func:`write_bytes`.
    :raises ValueError: if ``kind`` is not one line of ASCII.
    """
    head = kind.encode("ascii")
    if not head or b"\n" in head:
        raise ValueError(f"kind must be one non-empty line, got {kind!r}")
    return b"%s\nsha256:%s\n%s" % (head, sha256_hex([payload]).encode(), payload)


def is_sealed(data: bytes, kind: str) -> bool:
    """Whether ``data`` starts with the header line of ``kind`` (the digest is not checked)."""
    return data.startswith(kind.encode("ascii") + b"\n")


def unseal(data: bytes, kind: str, path: str | os.PathLike, what: str = "file") -> bytes:
    """The payload of :func:`seal`, after checking its kind and its SHA-256.

    :param data: the file's bytes.
    :param kind: the kind it must be.
    :param path: the file, for the error message.
    :param what: the kind of file the error message names.
    :return: the payload.
    :raises DamagedFileError: for an empty file, another kind of file, a damaged header or a
        payload whose digest does not match.
    """
    if not data:
        raise DamagedFileError(path, "the file is empty", what)
    if not is_sealed(data, kind):
        raise DamagedFileError(path, f"it does not start with the line {kind!r}", what)
    rest = data[len(kind) + 1 :]
    line, newline, payload = rest.partition(b"\n")
    digest = _DIGEST_LINE.fullmatch(line)
    if not newline or digest is None:
        raise DamagedFileError(path, "its checksum line is damaged", what)
    if sha256_hex([payload]) != digest.group(1).decode():
        raise DamagedFileError(path, "its contents do not match their SHA-256 checksum", what)
    return payload


def unpickle_sealed(
    path: str | os.PathLike, kind: str, what: str, keys: Sequence[str]
) -> dict[str, Any]:
    """Read a pickled dict sealed with :func:`seal` (ES's and PPO's checkpoints) after checking
    its SHA-256. Unpickling can run code: read only files from a trusted source.

    :param kind: the seal's kind line.
    :param what: the kind of file, for error messages.
    :param keys: entries the dict must hold.
    :raises FileNotFoundError: if there is no file at ``path``.
    :raises DamagedFileError: for an empty, damaged or foreign file, a payload that does not
        unpickle, or a state without ``keys``.
    """
    payload = unseal(Path(path).read_bytes(), kind, path, what)
    try:
        state = pickle.loads(payload)  # noqa: S301 - sealed, and documented as trusted-only
    except Exception as err:  # noqa: BLE001 - any unreadable payload gets the same clear error
        raise DamagedFileError(path, f"cannot unpickle it ({err})", what) from err
    if not isinstance(state, dict) or not set(keys) <= set(state):
        raise DamagedFileError(path, f"it does not hold the entries {tuple(keys)}", what)
    return state


def newest_intact(
    files: Sequence[Path], read: Callable[[Path], T], folder: str | os.PathLike | None
) -> tuple[Path, T] | None:
    """The first of ``files`` (newest first) that ``read`` accepts, and what it read; damaged
    ones before it are skipped with one warning naming them (the resume rule of every trainer).

    :param files: the candidates, newest first.
    :param read: reads one file; raises :class:`DamagedFileError` for a damaged one.
    :param folder: where the files are, for the error.
    :return: (file, its contents), or None when there are no files.
    :raises DamagedFileError: when every file is damaged.
    """
    skipped: list[DamagedFileError] = []
    for candidate in files:
        try:
            state = read(candidate)
        except DamagedFileError as err:
            skipped.append(err)
            continue
        if skipped:
            warnings.warn(
                f"resumed from {candidate.name}, the newest intact checkpoint; skipped "
                + "; ".join(f"{Path(e.path).name} ({e.reason})" for e in skipped),
                stacklevel=3,
            )
        return candidate, state
    if skipped:
        raise DamagedFileError(
            os.fspath(folder or "."),
            "no intact checkpoint in it: " + "; ".join(str(e) for e in skipped),
            "checkpoint folder",
        )
    return None


def numbered_files(folder: str | os.PathLike, name: re.Pattern[str]) -> list[Path]:
    """The files in ``folder`` whose whole name matches ``name`` (one group: a number), the
    highest number first (how the trainers list their checkpoints, newest first).

    :param folder: a folder (missing: none).
    :param name: the file-name pattern, e.g. ``checkpoint-(\\d+)\\.pt``.
    """
    found = [(name.fullmatch(p.name), p) for p in Path(folder).glob("*")]
    return [p for m, p in sorted((m_p for m_p in found if m_p[0]), key=_number, reverse=True)]


def _number(pair: tuple[re.Match[str] | None, Path]) -> int:
    return int(pair[0].group(1))  # type: ignore[union-attr] - only matches are sorted
