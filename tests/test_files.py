"""Files the package writes: atomic (a failed write leaves the old file and no temporary), and
sealed with a SHA-256 that reading checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from fake_runs import three_teachers
from synthetic_env import SyntheticTeachingEnv

from l2t_gym.experiment import TrainedTeacher
from l2t_gym.files import (
    DamagedFileError,
    atomic_open,
    seal,
    unseal,
    write_bytes,
    write_text,
)
from l2t_gym.report import plot_keep_ratio, write_csv
from l2t_gym.teachers import BernoulliTeacher
from l2t_gym.teachers.reinforce import ReinforceConfig, ReinforceTrainer


class DiskFull(OSError):
    pass


def fail_writes_after(monkeypatch: pytest.MonkeyPatch, n_bytes: int) -> None:
    """Every file opened through ``os.fdopen`` from now on (how the package opens its temporary
    files) accepts ``n_bytes`` and then fails like a full disk, part way through a write."""
    real_fdopen = os.fdopen

    class FailingFile:
        def __init__(self, f):
            self._f, self._left = f, n_bytes

        def write(self, data):
            if len(data) > self._left:
                self._f.write(data[: self._left])
                self._f.flush()
                raise DiskFull(28, "No space left on device")
            self._left -= len(data)
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: FailingFile(real_fdopen(*a, **k)))


def write_teacher(path: Path, seed: int) -> None:
    BernoulliTeacher(SyntheticTeachingEnv().feature_names, seed=seed).save(path)


def write_checkpoint(path: Path, seed: int) -> None:
    # The trainer names its file after the episodes done: 0 here, so both calls write the same.
    env = SyntheticTeachingEnv()
    trainer = ReinforceTrainer(
        env, BernoulliTeacher(env.feature_names, seed=seed), ReinforceConfig(), path.parent
    )
    assert trainer.save_checkpoint() == path


def write_history(path: Path, seed: int) -> None:
    teacher = BernoulliTeacher(SyntheticTeachingEnv().feature_names, seed=seed)
    history = [{"episode": i, "reward": 0.1 * seed} for i in range(50)]
    TrainedTeacher(teacher, history, 1.0, False, "digits").save(path.with_suffix(".st"), path)


def write_runs_csv(path: Path, seed: int) -> None:
    write_csv(three_teachers(), [seed + i for i in range(4)], path)


def write_plot(path: Path, seed: int) -> None:
    plot_keep_ratio(three_teachers(), path, f"title {seed}")


WRITERS = {
    "teacher.safetensors": write_teacher,
    "checkpoint-000000.pt": write_checkpoint,
    "training.json": write_history,
    "runs.csv": write_runs_csv,
    "keep_ratio.png": write_plot,
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_write_that_fails_part_way_leaves_the_old_file_and_no_temporary(
    name, tmp_path, monkeypatch
):
    path = tmp_path / name
    WRITERS[name](path, seed=1)
    old = path.read_bytes()
    before = sorted(p.name for p in tmp_path.iterdir())
    fail_writes_after(monkeypatch, n_bytes=len(old) // 3)
    with pytest.raises(DiskFull):
        WRITERS[name](path, seed=2)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary left behind


def test_atomic_writes_replace_the_file_whole_with_the_usual_permissions(tmp_path):
    path = tmp_path / "out.txt"
    write_text(path, "first\n")
    write_text(path, "second, longer\n")
    assert path.read_text() == "second, longer\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would, not mkstemp's 0600
    path.chmod(0o640)
    write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01" and path.stat().st_mode & 0o777 == 0o640
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write(b"half")
        raise RuntimeError("the caller fails mid-write")
    assert path.read_bytes() == b"\x00\x01" and len(list(tmp_path.iterdir())) == 1


def test_every_flipped_byte_of_a_sealed_file_is_refused(tmp_path):
    payload = torch.arange(100).numpy().tobytes()
    data = seal("l2t-gym test 1", payload)
    assert unseal(data, "l2t-gym test 1", "f") == payload
    for i in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[i] ^= flip
            with pytest.raises(DamagedFileError, match="'f' is damaged or not an l2t-gym file"):
                unseal(bytes(bad), "l2t-gym test 1", "f")
    for bad, reason in [
        (b"", "the file is empty"),
        (data[:-1], "do not match"),
        (data + b"\x00", "do not match"),
        (seal("l2t-gym other 1", payload), "does not start with"),
        (data.replace(b"sha256:", b"sha256 "), "checksum line"),
    ]:
        with pytest.raises(DamagedFileError, match=reason):
            unseal(bad, "l2t-gym test 1", tmp_path / "x.pt", "checkpoint")
    assert issubclass(DamagedFileError, ValueError)
