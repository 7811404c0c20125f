"""Downloaded archives, fetched with their checksum checked and unpacked without trusting them.

A matching md5 says the archive is the one its publisher made, not that its member names are
safe: a tarball may name ``../x``, ``/etc/x``, a link pointing anywhere, or a device, and a plain
``extractall`` writes wherever they say. The archives this package unpacks (aclImdb,
cifar-10-python) hold nothing but files and folders, so anything else is refused, before a single
byte is written; the standard library's ``"data"`` extraction filter then guards the extraction
itself where this Python has it (3.10.12, 3.11.4 and later).
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

from l2t_gym.data.raw import DatasetNotFoundError


def download_and_extract(url: str, root: Path, filename: str, md5: str) -> Path:
    """Download ``url`` to ``root/filename`` unless a file with that md5 is there, check its md5,
    and unpack it into ``root`` with :func:`extract_tar`.

    The download is torchvision's ``download_url`` (redirects, an http fallback, the md5 check),
    so every dataset of the package fetches the same way; only the unpacking is ours.

    :return: the archive's path.
    :raises RuntimeError: from torchvision when the download's md5 does not match.
    :raises DatasetNotFoundError: from :func:`extract_tar` for an unsafe member.
    """
    # Imported here: only a download needs torchvision's utilities.
    from torchvision.datasets.utils import download_url

    download_url(url, str(root), filename=filename, md5=md5)
    archive = Path(root) / filename
    extract_tar(archive, Path(root))
    return archive


def extract_tar(archive: Path, target: Path) -> None:
    """Unpack a (possibly compressed) tarball into ``target``, every member inside it.

    :param archive: the tarball.
    :param target: the folder the members' names are relative to (made if missing).
    :raises DatasetNotFoundError: naming the archive and the first member that is not a regular
        file or folder, or whose name is absolute or climbs out with ``..``; nothing is written.
    """
    target = Path(target)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            problem = unsafe_member(member)
            if problem is not None:
                raise DatasetNotFoundError(
                    f"{archive}: member {member.name!r} {problem}; refusing to unpack the archive "
                    f"into {target} (it should hold only files and folders below it). Delete the "
                    f"archive and fetch it again."
                )
        target.mkdir(parents=True, exist_ok=True)
        if hasattr(tarfile, "data_filter"):
            try:
                tar.extractall(target, members=members, filter="data")
            except tarfile.FilterError as err:
                raise DatasetNotFoundError(f"{archive}: {err}; refusing to unpack it") from err
        else:  # pragma: no cover - Pythons before the filter; the member check above holds
            tar.extractall(target, members=members)


def unsafe_member(member: tarfile.TarInfo) -> str | None:
    """What makes ``member`` unsafe to unpack (a phrase), or None for a plain file or folder whose
    name stays below the target folder."""
    if not (member.isfile() or member.isdir()):
        kind = "a link" if member.issym() or member.islnk() else "a device or other special file"
        return f"is {kind}, not a file or folder"
    if unsafe_name(member.name):
        return "has a name that leads outside the target folder"
    return None


def unsafe_name(name: str) -> bool:
    """Whether an archive member's name is absolute or climbs with ``..`` (either separator;
    drive letters are left to the ``"data"`` filter, which knows the platform's paths)."""
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts
