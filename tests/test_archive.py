"""Archives the package unpacks (the aclImdb and CIFAR-10 downloads) on tarballs the tests make:
members that would land outside the target folder are refused before anything is written, even
when the archive's md5 matches. No test touches the network (the ``serve`` fixture stands in)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torchvision.datasets.cifar
from fabricate import (
    Member,
    device_member,
    file_member,
    link_member,
    tar_gz,
    write_cifar10,
    write_imdb,
)

from l2t_gym.data import DatasetNotFoundError
from l2t_gym.data import imdb as imdb_module
from l2t_gym.data.archive import extract_tar
from l2t_gym.data.imdb import load_imdb
from l2t_gym.data.vision import load_cifar10


def files_under(folder: Path) -> set[str]:
    """Every path below ``folder`` (links included, not followed), relative to it."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def unsafe_members(outside: Path) -> dict[str, tuple[Member, ...]]:
    """One archive's worth of each kind of member that must not be unpacked; ``outside`` is a
    folder beside the target that none of them may touch."""
    victim = outside / "victim.txt"
    return {
        "dot-dot": (file_member("../escape.txt"),),
        "nested dot-dot": (file_member("aclImdb/../../escape.txt"),),
        "absolute": (file_member(str(outside / "absolute.txt")),),
        "symlink out": (link_member("aclImdb/out", str(outside)),),
        "relative symlink out": (link_member("aclImdb/out", "../../outside"),),
        # The classic two-step: a link out, then a file written through it.
        "through a symlink": (
            link_member("aclImdb/out", str(outside)),
            file_member("aclImdb/out/through.txt"),
        ),
        "hard link out": (link_member("aclImdb/hard", str(victim), hard=True),),
        "device": (device_member("aclImdb/null"),),
    }


KINDS = list(unsafe_members(Path("/")))


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(target, outside): an empty target folder and a sibling holding one file."""
    target, outside = tmp_path / "root", tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    (outside / "victim.txt").write_text("untouched")
    return target, outside


def assert_untouched(tmp_path: Path, target: Path, outside: Path) -> None:
    assert files_under(outside) == {"victim.txt"}
    assert (outside / "victim.txt").read_text() == "untouched"
    assert {p.name for p in tmp_path.iterdir()} <= {"root", "outside", "archive.tar.gz"}
    assert not (tmp_path / "escape.txt").exists()
    assert files_under(target) <= {"aclImdb_v1.tar.gz", "cifar-10-python.tar.gz"}


@pytest.mark.parametrize("kind", KINDS)
def test_unsafe_members_are_refused_before_anything_is_written(
    layout: tuple[Path, Path], tmp_path: Path, kind: str
) -> None:
    target, outside = layout
    members = unsafe_members(outside)[kind]
    archive = tmp_path / "archive.tar.gz"
    # A harmless file first: refusing must happen before it is written, too.
    archive.write_bytes(tar_gz(extra=(file_member("aclImdb/README", b"ok"), *members)))
    with pytest.raises(DatasetNotFoundError) as info:
        extract_tar(archive, target)
    message = str(info.value)
    assert str(archive) in message and repr(members[0][0].name) in message
    assert "refusing to unpack" in message
    assert_untouched(tmp_path, target, outside)


def test_files_and_folders_unpack_below_the_target(tmp_path: Path) -> None:
    source = write_imdb(tmp_path / "source", n_train=4, n_test=2).root
    archive = tmp_path / "archive.tar.gz"
    archive.write_bytes(tar_gz(source / "aclImdb", "aclImdb"))
    extract_tar(archive, tmp_path / "root")
    assert files_under(tmp_path / "root") == files_under(source)


# -- through the loaders' downloads -------------------------------------------------------------
def test_imdb_download_with_escaping_members_is_refused_though_its_md5_matches(
    layout: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve
) -> None:
    target, outside = layout
    source = write_imdb(tmp_path / "source", n_train=4, n_test=2).root
    archive = tar_gz(
        source / "aclImdb",
        "aclImdb",
        extra=(file_member("../escape.txt"), link_member("aclImdb/out", str(outside))),
    )
    monkeypatch.setattr(imdb_module, "IMDB_MD5", hashlib.md5(archive).hexdigest())
    serve(archive)
    with pytest.raises(DatasetNotFoundError, match=r"'\.\./escape\.txt'.*refusing to unpack"):
        load_imdb(target, download=True)
    assert files_under(outside) == {"victim.txt"}
    assert not (tmp_path / "escape.txt").exists()
    assert files_under(target) == {"aclImdb_v1.tar.gz"}, "nothing may be unpacked"


def test_cifar10_download_goes_through_the_safe_unpacking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve, cifar_md5_patch: None
) -> None:
    source = write_cifar10(tmp_path / "source", n_per_batch=10, n_test=10).root
    good = tar_gz(source / "cifar-10-batches-py", "cifar-10-batches-py")
    cifar10 = torchvision.datasets.cifar.CIFAR10
    monkeypatch.setattr(cifar10, "tgz_md5", hashlib.md5(good).hexdigest())
    asked = serve(good)
    raw = load_cifar10(tmp_path / "root", download=True)
    assert raw.x_train.shape == (50, 3, 32, 32) and len(raw.y_test) == 10
    assert asked and asked[-1] == cifar10.url

    bad = tar_gz(source / "cifar-10-batches-py", "cifar-10-batches-py", (file_member("../x"),))
    monkeypatch.setattr(cifar10, "tgz_md5", hashlib.md5(bad).hexdigest())
    serve(bad)
    with pytest.raises(DatasetNotFoundError, match=r"Downloading CIFAR-10 .* '\.\./x'"):
        load_cifar10(tmp_path / "elsewhere", download=True)
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "elsewhere" / "cifar-10-batches-py").exists()
