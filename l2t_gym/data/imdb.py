"""The Large Movie Review Dataset (Maas et al., ACL 2011) as padded token ids.

Read from ``<root>/aclImdb`` in the archive's own layout,
``{train,test}/{pos,neg}/<id>_<rating>.txt`` (``train/unsup`` is ignored), or downloaded there from
the official archive (md5-checked, and unpacked only if every member is a file or folder that
stays below ``root``: ``l2t_gym.data.archive``) with ``download=True``. Each review becomes a row of
``max_len`` int64 token ids:

* **Text.** HTML line breaks (``<br />``, which the reviews use for paragraphs) become spaces; the
  text is lowercased and split by :data:`TOKEN_PATTERN`: runs of letters and digits, with
  apostrophes kept inside words ("don't", "it's") but not around them ('quoted' -> quoted).
* **Vocabulary.** The ``vocab_size - 2`` most frequent words of the official *training* reviews
  (ties: alphabetical), never the test reviews, get ids 2, 3, ...; id 0 is padding and id 1
  stands for every other word (out of vocabulary).
* **Length.** Reviews longer than ``max_len`` tokens keep their *last* ``max_len`` tokens: reviews
  tend to end on their verdict ("... 8/10, recommended"), while the start often retells the
  plot (on a real 5,000-review subset, 71% of reviews fit in 256 tokens, and keeping the first
  256 instead made no measurable difference to a keep-all student in one run). Shorter ones
  are padded with 0 *at the end*, so a student can tell the true length by counting non-zero
  ids and a unidirectional LSTM reads real tokens before any padding. An empty review is one
  out-of-vocabulary token, so every row has at least one real id.
* **Data feature.** ``review_length``: the token count before truncation over
  :data:`LENGTH_SCALE`, clipped to 1. A constant rather than the longest training review keeps the
  feature's meaning fixed across subsets and free of outliers.

Labels: pos = 1, neg = 0. The tokenised arrays are cached in ``<root>/aclImdb/.l2t_cache``, or,
if the aclImdb folder is read-only (as shared copies often are), in a per-user cache folder
(:func:`user_cache_folder`). Cache files are keyed by the settings, the tokenizer version and
every review file's name, size and modification time, written atomically and checked on reading
(a damaged one is rebuilt), so only the first start reads the text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from l2t_gym.data.archive import download_and_extract
from l2t_gym.data.raw import DatasetNotFoundError, Origin, RawData

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
IMDB_ARCHIVE = "aclImdb_v1.tar.gz"
IMDB_FOLDER = "aclImdb"
CACHE_FOLDER = ".l2t_cache"

PAD_ID = 0
OOV_ID = 1
DEFAULT_VOCAB_SIZE = 10_000
DEFAULT_MAX_LEN = 256
#: Token count that maps to review_length = 1: the 98th percentile of 5,000 IMDB training
#: reviews under this tokenizer (median 175, 90th percentile 456), so the feature spreads over
#: [0, 1] and only the longest 2% are clipped.
LENGTH_SCALE = 800

#: Words: letters and digits, with apostrophes only between them.
TOKEN_PATTERN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
#: Bump when the text processing changes, so that caches made by the old one are not read.
TOKENIZER_VERSION = 1
_CACHE_FORMAT = 1

SPLIT_NAMES = ("train", "test")
LABEL_FOLDERS = (("neg", 0), ("pos", 1))
_REVIEW_FILE = re.compile(r"(\d+)_(\d+)\.txt")
_LAYOUT = "{train,test}/{pos,neg}/<id>_<rating>.txt"


def tokenize(text: str) -> list[str]:
    """Lowercased words of one review, HTML line breaks removed (see the module docstring)."""
    return TOKEN_PATTERN.findall(_LINE_BREAK.sub(" ", text).lower())


def build_vocabulary(token_lists: Iterable[Sequence[str]], vocab_size: int) -> dict[str, int]:
    """Word -> id for the ``vocab_size - 2`` most frequent words (ties alphabetical), ids from 2;
    ids 0 (padding) and 1 (out of vocabulary) are reserved and not in the mapping."""
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    return _rank(counts, vocab_size)


def _rank(counts: dict[str, int], vocab_size: int) -> dict[str, int]:
    if vocab_size < 3:
        raise ValueError(
            f"vocab_size must be at least 3 (padding, unknown, a word), got {vocab_size}"
        )
    seen = ((w, c) for w, c in counts.items() if c > 0)
    ranked = sorted(seen, key=lambda wc: (-wc[1], wc[0]))[: vocab_size - 2]
    return {word: i + 2 for i, (word, _) in enumerate(ranked)}


def imdb_folder(root: Path) -> Path:
    """The folder the reviews are read from: ``<root>/aclImdb``."""
    return Path(root) / IMDB_FOLDER


def load_imdb(
    root: Path,
    download: bool,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    max_len: int = DEFAULT_MAX_LEN,
    cache_dir: Path | None = None,
) -> RawData:
    """IMDB reviews as (N, ``max_len``) int64 token ids, labels pos = 1 / neg = 0.

    :param root: the data root; reviews are read from ``<root>/aclImdb``.
    :param download: fetch and unpack the official archive (md5-checked) if the folder is missing.
    :param vocab_size: ids in all, padding (0) and out-of-vocabulary (1) included.
    :param max_len: tokens kept per review (the last ones).
    :param cache_dir: where the tokenised arrays are cached; if None, ``<root>/aclImdb/.l2t_cache``,
        or :func:`user_cache_folder` when the aclImdb folder is read-only.

    :raises DatasetNotFoundError: the folder is missing or incomplete and could not be downloaded.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    if vocab_size < 3:
        raise ValueError(
            f"vocab_size must be at least 3 (padding, unknown, a word), got {vocab_size}"
        )
    root = Path(root)
    folder = imdb_folder(root)
    files = _list_reviews(folder)
    if files is None:
        if not download:
            raise DatasetNotFoundError(f"IMDB was not found in {folder}. {_guidance(root)}")
        _download(root)
        files = _list_reviews(folder)
        if files is None:
            raise DatasetNotFoundError(
                f"The IMDB archive was downloaded but {folder} still lacks reviews. "
                f"{_guidance(root)}"
            )
    key = _cache_key(files, vocab_size, max_len)
    cache = Path(cache_dir) if cache_dir is not None else _cache_folder(folder)
    arrays = _read_cache(cache / f"{key}.npz", key, files, vocab_size, max_len)
    if arrays is None:
        arrays = _tokenise(folder, files, vocab_size, max_len)
        _write_cache(cache, key, arrays)
    return _to_raw(arrays, folder, max_len)


# -- files ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Review:
    path: str  # relative to the aclImdb folder, with "/" separators
    size: int
    mtime_ns: int
    label: int


def _list_reviews(folder: Path) -> dict[str, list[_Review]] | None:
    """Review files per split in a fixed order (label, then numeric id); None if any of the four
    folders is missing or holds no review."""
    out: dict[str, list[_Review]] = {}
    for split in SPLIT_NAMES:
        reviews: list[tuple[int, int, str, _Review]] = []
        for name, label in LABEL_FOLDERS:
            sub = folder / split / name
            if not sub.is_dir():
                return None
            found = 0
            with os.scandir(sub) as entries:
                for entry in entries:
                    match = _REVIEW_FILE.fullmatch(entry.name)
                    if match and entry.is_file():
                        rel = f"{split}/{name}/{entry.name}"
                        stat = entry.stat()
                        review = _Review(rel, stat.st_size, stat.st_mtime_ns, label)
                        reviews.append((label, int(match.group(1)), entry.name, review))
                        found += 1
            if not found:
                return None
        out[split] = [r for *_, r in sorted(reviews, key=lambda t: t[:3])]
    return out


def _download(root: Path) -> None:
    try:
        # md5-checked, and unpacked only if every member is a file or folder below root.
        download_and_extract(IMDB_URL, root, IMDB_ARCHIVE, IMDB_MD5)
    except Exception as err:
        # urllib, tarfile, torchvision's md5 check ("File not found or corrupted.") and the member
        # check each raise their own types; all mean the archive is not usable. The cause stays
        # chained.
        raise DatasetNotFoundError(
            f"Downloading IMDB ({IMDB_URL}, md5 {IMDB_MD5}) into {root} failed "
            f"({type(err).__name__}: {err}). {_guidance(root)}"
        ) from err


def _guidance(root: Path) -> str:
    return (
        f"IMDB is read from {imdb_folder(root)}, which must hold the Large Movie Review Dataset "
        f"in its original layout, {_LAYOUT} (the contents of {IMDB_ARCHIVE}; train/unsup is "
        f"not needed). Pass download=True to fetch it (needs network, about 80 MB), or unpack "
        f"the archive there yourself. The data root (here {root}) is chosen by data_root= or, "
        f"failing that, the L2T_DATA environment variable."
    )


# -- tokenising -------------------------------------------------------------------------------
def _tokenise(
    folder: Path, files: dict[str, list[_Review]], vocab_size: int, max_len: int
) -> dict[str, np.ndarray]:
    """Token ids, token counts and labels of every review, vocabulary as :func:`build_vocabulary`
    builds it from the training reviews. One pass over the text, holding each review as an array
    of word numbers rather than a list of strings: the 50,000 reviews' 12 million tokens as
    Python strings would take about 0.7 GB."""
    number: dict[str, int] = {}  # word -> its number, in order of first appearance
    reviews: dict[str, list[np.ndarray]] = {}
    for split, rs in files.items():
        reviews[split] = []
        for r in rs:
            tokens = tokenize((folder / r.path).read_text(encoding="utf-8", errors="replace"))
            words = (number.setdefault(t, len(number)) for t in tokens)
            reviews[split].append(np.fromiter(words, dtype=np.int64, count=len(tokens)))
    # Counted over the training reviews only: words seen only in test reviews count 0.
    counts = np.bincount(np.concatenate(reviews["train"]), minlength=len(number))
    vocab = _rank(dict(zip(number, counts.tolist(), strict=True)), vocab_size)
    to_id = np.full(len(number), OOV_ID, dtype=np.int64)
    for word, i in vocab.items():
        to_id[number[word]] = i
    arrays: dict[str, np.ndarray] = {"vocab_size": np.asarray(len(vocab) + 2, dtype=np.int64)}
    for split, rs in files.items():
        x = np.zeros((len(rs), max_len), dtype=np.int64)
        lengths = np.empty(len(rs), dtype=np.int64)
        for i, words in enumerate(reviews[split]):
            lengths[i] = len(words)
            ids = to_id[words[-max_len:]] if len(words) else [OOV_ID]
            x[i, : len(ids)] = ids
        arrays[f"x_{split}"] = x
        arrays[f"len_{split}"] = lengths
        arrays[f"y_{split}"] = np.array([r.label for r in rs], dtype=np.int64)
    return arrays


def _to_raw(arrays: dict[str, np.ndarray], folder: Path, max_len: int) -> RawData:
    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arrays[name], dtype=np.int64))

    length = np.minimum(arrays["len_train"] / LENGTH_SCALE, 1.0).astype(np.float32)
    names = {}
    for split in SPLIT_NAMES:
        reviews = f"the reviews in {folder / split}/{{neg,pos}}"
        names[f"x_{split}"], names[f"y_{split}"] = f"{reviews} (token ids)", f"{reviews} (labels)"
    names["extras_train"] = f"the reviews in {folder / 'train'}/{{neg,pos}} (review lengths)"
    return RawData(
        x_train=tensor("x_train"),
        y_train=tensor("y_train"),
        x_test=tensor("x_test"),
        y_test=tensor("y_test"),
        num_classes=2,
        extras_train=torch.from_numpy(length[:, None].copy()),
        extra_names=("review_length",),
        vocab_size=int(arrays["vocab_size"]),
        origin=Origin(names=names, input_shape=(max_len,), files=True),
    )


# -- cache ------------------------------------------------------------------------------------
def user_cache_folder() -> Path:
    """Where token caches of read-only aclImdb folders go: ``$XDG_CACHE_HOME/l2t_gym/imdb``
    (``~/.cache/l2t_gym/imdb`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "l2t_gym" / "imdb"


def _cache_folder(folder: Path) -> Path:
    # Write permission is judged by the mode bits as well as by access(): a folder marked
    # read-only for everyone is left alone even by a user (such as root) who could write there.
    writable = os.access(folder, os.W_OK) and folder.stat().st_mode & 0o222
    return folder / CACHE_FOLDER if writable else user_cache_folder()


def _cache_key(files: dict[str, list[_Review]], vocab_size: int, max_len: int) -> str:
    spec = {
        "format": _CACHE_FORMAT,
        "tokenizer": TOKENIZER_VERSION,
        "pattern": TOKEN_PATTERN.pattern,
        "vocab_size": vocab_size,
        "max_len": max_len,
        "files": {split: [[r.path, r.size, r.mtime_ns] for r in rs] for split, rs in files.items()},
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def _write_cache(cache: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    # Ids fit in 16 bits for any vocabulary up to 65,536: a quarter of the int64 size on disk.
    small = np.uint16 if int(arrays["vocab_size"]) <= 2**16 else np.int32
    payload = {k: (v.astype(small) if k.startswith("x_") else v) for k, v in arrays.items()} | {
        "key": np.asarray(key)
    }
    tmp = None
    try:
        cache.mkdir(parents=True, exist_ok=True)
        # Written beside the target and renamed over it: a reader never sees half a file, and
        # two processes building the same cache at once both end with a whole one.
        with tempfile.NamedTemporaryFile(dir=cache, suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            np.savez(f, **payload)
        tmp.chmod(0o644)  # mkstemp makes it private; the data folder's readers may share it
        os.replace(tmp, cache / f"{key}.npz")
    except OSError as err:
        warnings.warn(
            f"could not write the IMDB token cache in {cache} ({err}); the reviews will be "
            "tokenised again on the next start",
            RuntimeWarning,
            stacklevel=3,
        )
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _read_cache(
    path: Path, key: str, files: dict[str, list[_Review]], vocab_size: int, max_len: int
) -> dict[str, np.ndarray] | None:
    """The cached arrays if the file is whole and consistent with the reviews on disk, else None
    (with a warning when a file was there but unusable)."""
    if not path.is_file():
        return None
    try:
        # Reading every member checks its CRC: a truncated or altered file fails here.
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        problem = _check_cached(arrays, key, files, vocab_size, max_len)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        problem = f"{type(err).__name__}: {err}"
    if problem is None:
        return arrays
    warnings.warn(
        f"ignoring the damaged IMDB token cache {path} ({problem}); rebuilding it",
        RuntimeWarning,
        stacklevel=3,
    )
    return None


def _check_cached(
    arrays: dict[str, np.ndarray],
    key: str,
    files: dict[str, list[_Review]],
    vocab_size: int,
    max_len: int,
) -> str | None:
    if str(arrays["key"]) != key:
        return "its key does not match its name"
    n_ids = int(arrays["vocab_size"])
    if not 3 <= n_ids <= vocab_size:
        return f"vocabulary size {n_ids} outside [3, {vocab_size}]"
    for split, reviews in files.items():
        x, y, lengths = arrays[f"x_{split}"], arrays[f"y_{split}"], arrays[f"len_{split}"]
        n = len(reviews)
        if x.shape != (n, max_len) or y.shape != (n,) or lengths.shape != (n,):
            return f"{split} arrays have the wrong shapes"
        if not all(a.dtype.kind in "iu" for a in (x, y, lengths)):
            return f"{split} arrays are not integers"
        if not np.array_equal(y, [r.label for r in reviews]):
            return f"{split} labels differ from the folders"
        if x.size and int(x.max()) >= n_ids:
            return f"{split} ids exceed the vocabulary"
        # Real ids first, then padding, as many as the (clipped) token count says.
        real = np.count_nonzero(x, axis=1)
        if not np.array_equal(real, np.clip(lengths, 1, max_len)):
            return f"{split} token counts do not match the ids"
        if x.size and not (x[np.arange(max_len)[None] >= real[:, None]] == PAD_ID).all():
            return f"{split} rows have ids after their padding"
    return None
