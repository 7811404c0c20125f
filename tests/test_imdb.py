"""The IMDB task on aclImdb trees the tests write: loader, vocabulary, cache, download errors, and
the env's text features, determinism and learning. The LSTM student is tested in
``test_models.py``, the env through both checkers in ``test_check_env.py``."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from fabricate import FabricatedText, write_imdb, write_review_tree

import l2t_gym
from l2t_gym.data import DatasetNotFoundError, RawData, load_dataset
from l2t_gym.data import imdb as imdb_module
from l2t_gym.data.imdb import LENGTH_SCALE, OOV_ID, build_vocabulary, load_imdb, tokenize

ENV = "L2T-IMDB-v0"
ROOT = Path(__file__).resolve().parent.parent


def cache_files(root: Path) -> list[Path]:
    return sorted((root / "aclImdb" / ".l2t_cache").glob("*.npz"))


# -- text processing ----------------------------------------------------------------------------
def test_tokenizer_strips_line_breaks_and_keeps_inner_apostrophes():
    text = "Don't<br /><br />STOP.<BR>'Quoted' it's 10/10!<br/>end"
    assert tokenize(text) == ["don't", "stop", "quoted", "it's", "10", "10", "end"]


def test_vocabulary_ranks_by_count_then_alphabet_and_reserves_two_ids():
    vocab = build_vocabulary([["b", "a", "c", "b"], ["a", "d"]], vocab_size=5)
    # a and b twice (alphabetical tie-break), then c before d; 5 ids = pad, unknown, 3 words.
    assert vocab == {"a": 2, "b": 3, "c": 4}


# -- loader -------------------------------------------------------------------------------------
@pytest.fixture
def small_tree(tmp_path: Path) -> Path:
    train = [
        ("Awful film.<br /><br />Truly awful", 0),
        ("bad bad bad", 0),
        ("A great film, great cast", 1),
        ("great", 1),
    ]
    test = [("zebra zebra", 0), ("great film", 1)]
    write_review_tree(tmp_path, train, test, unsup=("zebra " * 6,))
    return tmp_path


def test_loader_reads_the_layout(small_tree: Path):
    raw = load_imdb(small_tree, download=False, max_len=3)
    assert raw.num_classes == 2 and raw.extra_names == ("review_length",)
    assert raw.x_train.dtype == torch.int64 and raw.x_train.shape == (4, 3)
    # Order: neg folder first, then pos, each by file id; pos = 1.
    assert raw.y_train.tolist() == [0, 0, 1, 1] and raw.y_test.tolist() == [0, 1]
    # Training words: bad 3, great 3, awful 2, film 2, a 1, cast 1, truly 1 (unsup not read).
    vocab = {"bad": 2, "great": 3, "awful": 4, "film": 5, "a": 6, "cast": 7, "truly": 8}
    assert raw.vocab_size == 9
    ids = [
        [vocab[w] for w in words]
        for words in (
            ["film", "truly", "awful"],  # awful film truly awful: the last 3 tokens, no <br />
            ["bad", "bad", "bad"],
            ["film", "great", "cast"],  # a great film great cast
            ["great"],
        )
    ]
    expected = np.zeros((4, 3), dtype=np.int64)
    for row, row_ids in enumerate(ids):
        expected[row, : len(row_ids)] = row_ids  # padding (0) at the end
    np.testing.assert_array_equal(raw.x_train.numpy(), expected)
    lengths = np.array([4, 3, 5, 1]) / LENGTH_SCALE
    np.testing.assert_allclose(raw.extras_train.numpy()[:, 0], lengths, rtol=1e-6)
    assert raw.extras_train.dtype == torch.float32


def test_loader_matches_a_plain_reference(imdb_files: FabricatedText, tmp_path: Path):
    # The loader tokenises in one pass over word numbers; this is the plain-strings version.
    raw = load_imdb(imdb_files.root, download=False, max_len=12, vocab_size=20, cache_dir=tmp_path)
    vocab = build_vocabulary([tokenize(t) for t, _ in imdb_files.train], 20)
    assert raw.vocab_size == 20 and len(vocab) == 18
    for reviews, x, y in (
        (imdb_files.train, raw.x_train, raw.y_train),
        (imdb_files.test, raw.x_test, raw.y_test),
    ):
        assert y.tolist() == [label for _, label in reviews]
        for row, (text, _) in zip(x.tolist(), reviews, strict=True):
            ids = [vocab.get(t, OOV_ID) for t in tokenize(text)[-12:]]
            assert row == ids + [0] * (12 - len(ids))


def test_task_defaults_match_the_loader():
    spec = l2t_gym.TASKS["imdb"]
    assert spec.input_shape == (imdb_module.DEFAULT_MAX_LEN,) and spec.num_classes == 2
    assert spec.extra_names == ("review_length",) and not spec.augment


def test_long_reviews_clip_the_length_feature_and_empty_reviews_keep_one_id(tmp_path: Path):
    long = " ".join(["word"] * (2 * LENGTH_SCALE))
    write_review_tree(tmp_path, [(long, 0), ("<br />", 1)], [("word", 0), ("word", 1)])
    raw = load_imdb(tmp_path, download=False, max_len=4)
    assert raw.extras_train[:, 0].tolist() == [1.0, 0.0]
    assert raw.x_train[1].tolist() == [OOV_ID, 0, 0, 0]


def test_vocabulary_comes_from_the_training_split_only(small_tree: Path):
    raw = load_imdb(small_tree, download=False, max_len=3)
    # "zebra" is in test reviews and train/unsup only: unknown.
    assert raw.x_test[0].tolist() == [OOV_ID, OOV_ID, 0]
    assert OOV_ID not in raw.x_test[1].tolist()  # "great film": both training words
    # With room for two words only, the two most frequent training words survive.
    tiny = load_imdb(small_tree, download=False, max_len=3, vocab_size=4)
    assert tiny.vocab_size == 4
    assert tiny.x_train[1].tolist() == [2, 2, 2]  # "bad" (3, before "great" alphabetically)
    assert tiny.x_train[0].tolist() == [OOV_ID, OOV_ID, OOV_ID]


# -- cache --------------------------------------------------------------------------------------
def _same(a: RawData, b: RawData) -> None:
    for name in ("x_train", "y_train", "x_test", "y_test", "extras_train"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.vocab_size == b.vocab_size


def _no_tokenizing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(text: str) -> list[str]:
        raise AssertionError("the reviews were tokenised again instead of read from the cache")

    monkeypatch.setattr(imdb_module, "tokenize", fail)


def test_second_load_reads_the_cache(small_tree: Path, monkeypatch: pytest.MonkeyPatch):
    first = load_imdb(small_tree, download=False, max_len=3)
    assert len(cache_files(small_tree)) == 1
    _no_tokenizing(monkeypatch)
    _same(first, load_imdb(small_tree, download=False, max_len=3))
    # Other settings, or a changed file, are another key: those must tokenise.
    with pytest.raises(AssertionError, match="tokenised again"):
        load_imdb(small_tree, download=False, max_len=4)
    (small_tree / "aclImdb" / "train" / "pos" / "1_8.txt").write_text("great great")
    with pytest.raises(AssertionError, match="tokenised again"):
        load_imdb(small_tree, download=False, max_len=3)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong labels"])
def test_a_damaged_cache_is_rebuilt(small_tree: Path, damage: str):
    first = load_imdb(small_tree, download=False, max_len=3)
    (path,) = cache_files(small_tree)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        data = bytearray(path.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 16] = b"\xff" * 16  # inside the stored arrays
        path.write_bytes(bytes(data))
    else:  # a whole, readable file whose content does not match the reviews
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["y_train"] = 1 - arrays["y_train"]
        np.savez(path, **arrays)
    with pytest.warns(RuntimeWarning, match="damaged IMDB token cache"):
        again = load_imdb(small_tree, download=False, max_len=3)
    _same(first, again)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache is whole again
        _same(first, load_imdb(small_tree, download=False, max_len=3))


def test_an_unwritable_cache_only_warns(small_tree: Path, tmp_path: Path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.warns(RuntimeWarning, match="could not write the IMDB token cache"):
        raw = load_imdb(small_tree, download=False, max_len=3, cache_dir=blocker / "cache")
    assert raw.x_train.shape == (4, 3)


# -- missing data and downloads -------------------------------------------------------------------
def _assert_guidance(message: str, root: Path) -> None:
    for part in (
        str(root / "aclImdb"),
        "{train,test}/{pos,neg}/<id>_<rating>.txt",
        "download=True",
        "data_root=",
        "L2T_DATA",
    ):
        assert part in message, part


def test_missing_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_imdb(tmp_path, download=False)
    _assert_guidance(str(err.value), tmp_path)
    # An incomplete tree (no test/neg reviews) is missing too.
    write_review_tree(tmp_path, [("a", 0), ("b", 1)], [("c", 1)])
    with pytest.raises(DatasetNotFoundError, match="not found"):
        load_imdb(tmp_path, download=False)
    env = gym.make(ENV, data_root=tmp_path / "nowhere", download=False, device="cpu")
    with pytest.raises(FileNotFoundError, match="IMDB"):
        env.reset(seed=0)


def test_failed_download_is_a_clear_error(tmp_path: Path, serve):
    asked = serve(None)
    with pytest.raises(DatasetNotFoundError, match="Downloading IMDB") as err:
        load_imdb(tmp_path, download=True)
    assert asked and asked[0] == imdb_module.IMDB_URL
    _assert_guidance(str(err.value), tmp_path)


def test_download_with_a_wrong_checksum_is_refused(tmp_path: Path, serve):
    serve(b"not the archive")
    with pytest.raises(DatasetNotFoundError, match="corrupted"):
        load_imdb(tmp_path, download=True)
    assert not (tmp_path / "aclImdb").exists()


def test_download_unpacks_a_verified_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve
):
    fabricated = write_imdb(tmp_path / "source", n_train=8, n_test=4)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(fabricated.root / "aclImdb", arcname="aclImdb")
    archive = buffer.getvalue()
    monkeypatch.setattr(imdb_module, "IMDB_MD5", hashlib.md5(archive).hexdigest())
    serve(archive)
    raw = load_imdb(tmp_path / "root", download=True)
    assert raw.y_train.tolist() == [0] * 4 + [1] * 4 and len(raw.y_test) == 4
    assert (tmp_path / "root" / imdb_module.IMDB_ARCHIVE).is_file()


# -- integer arrays -------------------------------------------------------------------------------
def test_integer_arrays_get_a_vocabulary_size(clean_data_cache):
    x = np.array([[3, 1, 0], [2, 0, 0]])
    raw = RawData.from_arrays(x, [0, 1], np.array([[7, 0, 0]]), [1], num_classes=2)
    assert raw.x_train.dtype == torch.int64
    assert load_dataset("own", None, False, torch.device("cpu"), arrays=raw).vocab_size == 8


# -- the env ------------------------------------------------------------------------------------
def test_observation_layout(imdb_root: Path, imdb_files: FabricatedText):
    env = gym.make(ENV, data_root=imdb_root, download=False, device="cpu", batch_size=8)
    obs, info = env.reset(seed=0)
    names = env.unwrapped.feature_names
    assert obs.shape == (8, 10) and obs.dtype == np.float32
    assert names[:3] == ("label_0", "label_1", "review_length")
    assert names[-2:] == ("loss", "margin")
    # The review_length column is the fabricated reviews' token count over LENGTH_SCALE.
    counts = {len(tokenize(t)) / LENGTH_SCALE for t, _ in imdb_files.train}
    assert all(any(abs(v - c) < 1e-6 for c in counts) for v in obs[:, 2])
    assert env.unwrapped.task == "imdb" and l2t_gym.ENV_IDS[ENV] == "imdb"


def test_same_seed_and_actions_repeat_exactly(imdb_root: Path):
    def episode() -> list[np.ndarray]:
        env = gym.make(
            ENV,
            data_root=imdb_root,
            download=False,
            device="cpu",
            batch_size=8,
            max_iters=6,
            eval_every=2,
            tau=1.0,
        )
        obs, _ = env.reset(seed=3)
        rng = np.random.default_rng(0)
        out, done = [obs], False
        while not done:
            obs, _, terminated, truncated, _ = env.step(rng.random(len(obs)) < 0.7)
            out.append(obs)
            done = terminated or truncated
        return out

    a, b = episode(), episode()
    assert len(a) > 6
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_keep_all_learns_a_separable_corpus(imdb_root: Path):
    env = gym.make(
        ENV,
        data_root=imdb_root,
        download=False,
        device="cpu",
        batch_size=16,
        tau=0.95,
        max_iters=150,
        eval_every=5,
    )
    obs, info = env.reset(seed=0)
    start, done = info["dev_accuracy"], False
    while not done:
        obs, reward, terminated, truncated, info = env.step(np.ones(len(obs)))
        done = terminated or truncated
    assert info["reached_tau"] and reward > 0 and start < 0.8


def test_a_read_only_folder_is_cached_per_user(
    small_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user_cache"))
    folder = small_tree / "aclImdb"
    folder.chmod(0o555)
    try:
        first = load_imdb(small_tree, download=False, max_len=3)
    finally:
        folder.chmod(0o755)
    assert not (folder / ".l2t_cache").exists()
    assert len(list((tmp_path / "user_cache" / "l2t_gym" / "imdb").glob("*.npz"))) == 1
    folder.chmod(0o555)
    try:
        _no_tokenizing(monkeypatch)
        _same(first, load_imdb(small_tree, download=False, max_len=3))
    finally:
        folder.chmod(0o755)


def test_benchmark_script_runs(imdb_root: Path, tmp_path: Path):
    csv = tmp_path / "imdb.csv"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "imdb_subset.py"),
            "--data-root",
            str(imdb_root),
            "--seeds",
            "0",
            "--tau",
            "0.9",
            "--max-iters",
            "6",
            "--eval-every",
            "3",
            "--out",
            str(csv),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for teacher in ("NoTeach", "RandTeach 0.5", "SPL", "LossRank 0.5"):
        assert teacher in proc.stdout
    assert csv.read_text().startswith("teacher,seed,reached_tau")
