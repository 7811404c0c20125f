"""What a teacher learned: its keep probability against instance loss, loss rank within its
candidate batch and margin, early, middle and late in training, and per class. Is it
easy-to-hard like self-paced learning, or hard-first?

:func:`analyze` lets a teacher teach one fresh student per seed and records every candidate row
it is shown (a uniform subsample on long runs) with its loss, margin and label (read from the
observation columns by name), its keep probability and the decision. :func:`phase_stats` and
:func:`binned` summarise the records; :func:`write_analysis` writes them as files.

Phases: each row's progress is the student iteration at which it was shown over the iterations
*that run* took to its end (reaching tau or running out of clock). Early, middle and late are the
thirds of that [0, 1) range. Thirds of T' would put nearly everything a good teacher does into
"early": it ends its episodes at a fraction of T', which is the point of the reward.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from scipy.stats import spearmanr

from l2t_gym.features import EXTRA_FEATURES, scaled_rank
from l2t_gym.files import atomic_open, save_figure, write_text
from l2t_gym.teachers import Teacher

PHASES = ("early", "middle", "late")
#: The per-instance features binned and plotted against keep probability.
FEATURES = ("loss", "loss_rank", "margin")
#: Columns of binned.csv (see :func:`binned`).
CSV_COLUMNS = ("phase", "feature", "bin", "lo", "hi", "x_mean", "n")
CSV_COLUMNS += ("keep_prob_mean", "keep_prob_q25", "keep_prob_q75", "kept_rate")
#: Below this |rho| a phase shows no preference for easy or hard instances.
MIN_RHO = 0.1
#: Spearman's rho only sees ranks: a teacher whose p moves by a thousandth with loss (an
#: untrained one) gets |rho| near 1. A preference worth the name must also move p by at least
#: this much between the highest- and the lowest-loss quarter of the rows.
MIN_DELTA = 0.02
# Mixed into the seeds of the subsample's and a plain policy's generators, so that neither ever
# shares a stream with the env (seeded with the run's seed) nor follows the other.
_SUBSAMPLE_STREAM = 0x5A3B1E
_DECISION_STREAM = 0x5A3B1F


class KeepProbabilityTeacher(Protocol):
    """What :func:`analyze` needs: one keep probability per candidate row. A ``reset(feature_names,
    seed=...)`` method, if present, is called at the start of every episode."""

    def keep_probabilities(self, obs: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class RunInfo:
    """One analysed run: its seed, student iterations and teacher steps to its end, whether it
    reached tau, and the instances it was shown and kept (before any subsampling)."""

    seed: int
    iterations: int
    teacher_steps: int
    reached_tau: bool
    instances_seen: int
    kept_instances: int


@dataclass(frozen=True)
class Records:
    """One entry per recorded candidate row (a uniform subsample of each run's rows).

    ``iteration``: the student iteration when the row was shown; ``clock_progress``: the
    ``iteration`` feature (clock / T'); ``run_progress``: iteration over the run's final iteration,
    which ``phase`` (0, 1, 2 = early, middle, late) cuts into thirds; ``keep_prob`` and ``kept``:
    the teacher's probability and decision.
    """

    seed: np.ndarray
    iteration: np.ndarray
    clock_progress: np.ndarray
    run_progress: np.ndarray
    phase: np.ndarray
    loss: np.ndarray
    loss_rank: np.ndarray
    """The row's loss rank within its candidate batch, in [0, 1] (1: the highest; the
    ``loss_rank`` column's definition, :func:`l2t_gym.features.scaled_rank`), computed from
    the ``loss`` column whether or not the env shows it."""
    margin: np.ndarray
    label: np.ndarray
    keep_prob: np.ndarray
    kept: np.ndarray
    num_classes: int
    runs: tuple[RunInfo, ...]
    optional: dict[str, np.ndarray] = field(default_factory=dict)
    """The env's optional columns (``extra_features``) per row, by name, but ``loss_rank``
    (always recorded above); empty for the paper's observation."""

    def __len__(self) -> int:
        return len(self.loss)


def analyze(
    teacher: KeepProbabilityTeacher,
    make_env: Callable[[], gym.Env],
    seeds: Sequence[int],
    max_rows_per_run: int = 50_000,
) -> Records:
    """Run one episode per seed with ``teacher`` deciding, and record every row it is shown.

    A :class:`~l2t_gym.teachers.Teacher` decides with its own ``act`` (a BernoulliTeacher samples
    as in training), so its episodes here are the ones ``run_episode`` would give; any other
    object's decisions are drawn from its probabilities. Each run keeps a uniform sample of at
    most ``max_rows_per_run`` rows, so memory stays bounded on long tasks; every phase's rows are
    then a uniform sample of that phase.

    :param teacher: anything with ``keep_probabilities(obs (M, d)) -> (M,)`` in [0, 1].
    :param make_env: builds the env (called once); it needs the ``loss``, ``margin``,
        ``iteration`` and ``label_c`` columns.
    :param seeds: one student per seed.
    :param max_rows_per_run: the cap of recorded rows per run.
    :return: the records.
    :raises ValueError: for no seeds, a bad cap, missing columns or bad probabilities.
    """
    if not seeds:
        raise ValueError("analyze needs at least one seed")
    if max_rows_per_run < 1:
        raise ValueError(f"max_rows_per_run must be positive, got {max_rows_per_run}")
    env = make_env()
    names = list(env.unwrapped.feature_names)
    col = {n: _column(names, n) for n in ("loss", "margin", "iteration")}
    optional = {n: names.index(n) for n in names if n in EXTRA_FEATURES and n != "loss_rank"}
    label_cols = [
        names.index(f"label_{c}") for c in range(sum(n.startswith("label_") for n in names))
    ]
    if len(label_cols) < 2:
        raise ValueError(f"need the label_0 .. label_(C-1) columns (C >= 2); the env has {names}")
    parts: list[dict[str, np.ndarray]] = []
    runs: list[RunInfo] = []
    for seed in seeds:
        obs, info = env.reset(seed=int(seed))
        if hasattr(teacher, "reset"):
            teacher.reset(names, seed=int(seed))  # a BernoulliTeacher checks the layout here
        draw = np.random.default_rng([int(seed), _DECISION_STREAM])
        sample = _RowSample(max_rows_per_run, np.random.default_rng([int(seed), _SUBSAMPLE_STREAM]))
        seen = kept_total = 0
        done = False
        while not done:
            p = _checked_probabilities(teacher.keep_probabilities(obs), len(obs))
            if isinstance(teacher, Teacher):
                keep = np.asarray(teacher.act(obs), dtype=bool)
            else:
                keep = draw.random(len(p)) < p
            sample.add(
                iteration=np.full(len(p), info["iteration"], dtype=np.int32),
                clock_progress=obs[:, col["iteration"]].astype(np.float32),
                loss=obs[:, col["loss"]].astype(np.float32),
                loss_rank=scaled_rank(obs[None, :, col["loss"]])[0],
                margin=obs[:, col["margin"]].astype(np.float32),
                label=obs[:, label_cols].argmax(axis=1).astype(np.int16),
                keep_prob=p.astype(np.float32),
                kept=keep,
                **{n: obs[:, j].astype(np.float32) for n, j in optional.items()},
            )
            seen, kept_total = seen + len(p), kept_total + int(keep.sum())
            obs, _, terminated, truncated, info = env.step(keep)
            done = terminated or truncated
        end = int(info["iteration"])
        part = sample.rows()
        # A run that never trained (end 0) has all its rows at progress 0: early.
        part["run_progress"] = (part["iteration"] / max(end, 1)).astype(np.float32)
        # Integer thirds: i / end * 3 in floating point can land just below a boundary.
        part["phase"] = np.minimum(3 * part["iteration"] // max(end, 1), 2).astype(np.int8)
        part["seed"] = np.full(len(part["loss"]), seed, dtype=np.int32)
        parts.append(part)
        reached = bool(info["reached_tau"])
        runs.append(RunInfo(int(seed), end, int(info["teacher_step"]), reached, seen, kept_total))
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    columns = {n: merged.pop(n) for n in optional}
    return Records(**merged, num_classes=len(label_cols), runs=tuple(runs), optional=columns)


class _RowSample:
    """A uniform sample of at most ``cap`` rows of one run: the rows with the smallest random keys
    (bottom-k sampling). Trimming only drops rows that could never make the final cut, so the
    sample is the same whenever the buffer is trimmed, and memory stays under 2 x cap rows."""

    def __init__(self, cap: int, rng: np.random.Generator) -> None:
        self.cap, self.rng = cap, rng
        self.chunks: list[dict[str, np.ndarray]] = []
        self.size = 0

    def add(self, **columns: np.ndarray) -> None:
        n = len(columns["loss"])
        self.chunks.append({**columns, "_key": self.rng.random(n)})
        self.size += n
        if self.size > 2 * self.cap:
            self._trim()

    def _trim(self) -> None:
        merged = {k: np.concatenate([c[k] for c in self.chunks]) for k in self.chunks[0]}
        if self.size > self.cap:
            # Sorted back into time order, so a sample reads like the episode did.
            idx = np.sort(np.argpartition(merged["_key"], self.cap - 1)[: self.cap])
            merged = {k: v[idx] for k, v in merged.items()}
        self.chunks, self.size = [merged], min(self.size, self.cap)

    def rows(self) -> dict[str, np.ndarray]:
        self._trim()
        return {k: v for k, v in self.chunks[0].items() if k != "_key"}


def _checked_probabilities(p: Any, m: int) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (m,):
        raise ValueError(f"keep_probabilities must return shape ({m},) for {m} rows, got {p.shape}")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError(f"keep_probabilities must lie in [0, 1]; got min {p.min()}, max {p.max()}")
    return p


def _column(names: list[str], name: str) -> int:
    if name not in names:
        raise ValueError(f"the env has no {name!r} observation column; its columns: {names}")
    return names.index(name)


# -- statistics -----------------------------------------------------------------------------------
def verdict(rho: float, delta: float | None = None) -> str:
    """One line on a phase: no preference, easy-to-hard, or hard-first.

    :param rho: Spearman's rank correlation of keep probability with loss.
    :param delta: the mean keep probability of the highest-loss quarter minus the lowest's
        (None: only rho decides).
    """
    if not math.isfinite(rho):
        return "undetermined (too few rows, or a constant keep probability)"
    if abs(rho) < MIN_RHO:
        return f"no clear preference (|rho| < {MIN_RHO})"
    if delta is not None and abs(delta) < MIN_DELTA:
        return f"no clear preference (p moves by < {MIN_DELTA} from low- to high-loss rows)"
    if rho < 0:
        return "keeps low-loss first (easy-to-hard, SPL-like)"
    return "keeps high-loss (hard-first)"


def phase_stats(records: Records) -> list[dict[str, Any]]:
    """Statistics of each phase (early, middle, late).

    :param records: from :func:`analyze`.
    :return: per phase: rows, mean keep probability, kept rate, Spearman's rho of p with loss,
        with loss rank and with margin, delta (see :func:`verdict`; NaN under 4 rows) and the
        verdict; ``rho_<name>`` with each optional column the env showed
        (:attr:`Records.optional`).
    """
    out = []
    for k, name in enumerate(PHASES):
        sel = records.phase == k
        p, loss, margin = records.keep_prob[sel], records.loss[sel], records.margin[sel]
        rho_loss, rho_margin = _spearman(p, loss), _spearman(p, margin)
        delta = math.nan
        if len(p) >= 4:
            order = np.argsort(loss, kind="stable")
            q = len(p) // 4
            delta = float(p[order[-q:]].mean() - p[order[:q]].mean())
        out.append(
            {
                "phase": name,
                "rows": int(sel.sum()),
                "keep_prob": float(p.mean()) if len(p) else math.nan,
                "kept_rate": float(records.kept[sel].mean()) if len(p) else math.nan,
                "rho_loss": rho_loss,
                "rho_rank": _spearman(p, records.loss_rank[sel]),
                "rho_margin": rho_margin,
                "delta": delta,
                "verdict": verdict(rho_loss, delta),
                **{f"rho_{n}": _spearman(p, v[sel]) for n, v in records.optional.items()},
            }
        )
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns NaN, as we want
        return float(spearmanr(a, b).statistic)


def binned(records: Records, n_bins: int = 10) -> list[dict[str, Any]]:
    """Rows of binned.csv (:data:`CSV_COLUMNS`): per phase, quantile bins of each of
    :data:`FEATURES`, and one bin per class.

    Quantile bins because losses are heavy-tailed: equal-width bins would leave most rows in the
    first bin. Tied edges merge, so a phase can have fewer than ``n_bins`` bins.

    :param records: from :func:`analyze`.
    :param n_bins: quantile bins per feature and phase.
    :raises ValueError: when ``n_bins`` < 1.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    rows = []
    for k, phase in enumerate(PHASES):
        sel = records.phase == k
        p, kept = records.keep_prob[sel], records.kept[sel]
        if not sel.any():
            continue
        for feature in FEATURES:
            x = getattr(records, feature)[sel].astype(np.float64)
            edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)))
            idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(len(edges) - 2, 0))
            for b in np.unique(idx):
                m = idx == b
                hi = edges[min(b + 1, len(edges) - 1)]
                rows.append(_bin_row(phase, feature, int(b), edges[b], hi, x[m], p[m], kept[m]))
        labels = records.label[sel]
        for c in range(records.num_classes):
            m = labels == c
            if m.any():
                rows.append(_bin_row(phase, "label", c, c, c, labels[m], p[m], kept[m]))
    return rows


def _bin_row(phase, feature, b, lo, hi, x, p, kept) -> dict[str, Any]:
    q25, q75 = np.quantile(p, [0.25, 0.75])
    values = (b, float(lo), float(hi), float(np.mean(x)), int(len(p)), float(p.mean()))
    values += (float(q25), float(q75), float(kept.mean()))
    return dict(zip(CSV_COLUMNS, (phase, feature, *values), strict=True))


# -- files ----------------------------------------------------------------------------------------
def write_analysis(
    records: Records, out: Path, n_bins: int = 10, header: Sequence[str] = ()
) -> str:
    """Write loss_margin.png (keep probability against quantile bins of loss and of margin, a
    column per phase, the band the 25-75% range of p in the bin), per_class.png, binned.csv (the
    values of both plots) and summary.md (the phases' statistics and verdicts) to ``out``.

    :param records: from :func:`analyze`.
    :param out: the folder (made if missing).
    :param n_bins: see :func:`binned`.
    :param header: markdown lines under the summary's title.
    :return: the summary's text.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = binned(records, n_bins)
    with atomic_open(out / "binned.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for row in table:
            w.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    _plot_loss_margin(table, out / "loss_margin.png")
    _plot_classes(table, records.num_classes, out / "per_class.png")
    summary = _summary(records, phase_stats(records), header)
    write_text(out / "summary.md", summary)
    return summary


def _summary(records: Records, stats: list[dict[str, Any]], header: Sequence[str]) -> str:
    runs = records.runs
    reached = [r.iterations for r in runs if r.reached_tau]
    seen = sum(r.instances_seen for r in runs)
    lines = ["# What the teacher learned", "", *header]
    optional = list(records.optional)
    lines += [
        f"- {len(runs)} students (seeds {', '.join(str(r.seed) for r in runs)}); "
        f"{len(reached)} reached tau; iterations per run {[r.iterations for r in runs]}",
        f"- instances seen {seen}, kept {sum(r.kept_instances for r in runs) / max(seen, 1):.1%}; "
        f"rows analysed {len(records)}",
        "- phases: thirds of each run's own student iterations to its end (not of T')",
        "",
        "| phase | rows | mean p | kept | rho(p, loss) | rho(p, loss rank) | rho(p, margin) "
        + "".join(f"| rho(p, {n}) " for n in optional)
        + "| dp high-low loss | verdict |",
        "|---|---|---|---|---|---|---|" + "---|" * len(optional) + "---|---|",
    ]
    for s in stats:
        lines.append(
            f"| {s['phase']} | {s['rows']} | {s['keep_prob']:.3f} | {s['kept_rate']:.3f} | "
            f"{s['rho_loss']:+.3f} | {s['rho_rank']:+.3f} | {s['rho_margin']:+.3f} | "
            + "".join(f"{s[f'rho_{n}']:+.3f} | " for n in optional)
            + f"{s['delta']:+.3f} | {s['verdict']} |"
        )
    lines += [
        "",
        f"rho: Spearman's rank correlation over the phase's rows; dp: mean p of the "
        f"highest-loss quarter minus the lowest's. |rho| < {MIN_RHO} or |dp| < {MIN_DELTA} "
        "counts as no preference.",
    ]
    return "\n".join(lines) + "\n"


def _plot_loss_margin(table: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(len(FEATURES), 3, figsize=(13, 3.5 * len(FEATURES)), sharey=True)
    for r, feature in enumerate(FEATURES):
        for c, phase in enumerate(PHASES):
            ax = axes[r, c]
            bins = [row for row in table if row["phase"] == phase and row["feature"] == feature]
            if bins:
                x = [b["x_mean"] for b in bins]
                ax.plot(x, [b["keep_prob_mean"] for b in bins], "o-", label="mean p")
                lo, hi = [b["keep_prob_q25"] for b in bins], [b["keep_prob_q75"] for b in bins]
                ax.fill_between(x, lo, hi, alpha=0.2, label="p, 25-75%")
                ax.plot(x, [b["kept_rate"] for b in bins], "x", color="k", label="kept rate")
            else:
                ax.text(0.5, 0.5, "no rows", ha="center", transform=ax.transAxes)
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(f"instance {feature.replace('_', ' ')} (mean of a quantile bin)")
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(f"{phase} third of each run")
            if c == 0:
                ax.set_ylabel("keep probability")
    axes[0, 0].legend(loc="best", fontsize=8)
    _save(plt, fig, path)


def _plot_classes(table: list[dict[str, Any]], num_classes: int, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * num_classes + 2), 4))
    width = 0.8 / len(PHASES)
    for k, phase in enumerate(PHASES):
        by_class = {
            r["bin"]: r["keep_prob_mean"]
            for r in table
            if r["phase"] == phase and r["feature"] == "label"
        }
        y = [by_class.get(c, math.nan) for c in range(num_classes)]
        ax.bar(np.arange(num_classes) + (k - 1) * width, y, width, label=phase)
    ax.set_xticks(range(num_classes))
    ax.set_xlabel("class (label)")
    ax.set_ylabel("mean keep probability")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    # Above the axes: bars near p = 1 would hide under a legend inside them.
    ax.legend(ncol=len(PHASES), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    _save(plt, fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
