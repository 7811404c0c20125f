"""l2t_gym.analysis and benchmarks/analyze_teacher.py: a tiny run of the script writes its files
with plausible values, synthetic teachers with a known preference get the right verdict, and bad
input fails clearly."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from script_runner import run as run_script

import l2t_gym.analysis as at
from l2t_gym.teachers import BernoulliTeacher, run_episode

T_PRIME = 9  # far too short to reach tau: every run ends at iteration 9, phases of 3 iterations
EASY, HARD = "keeps low-loss first (easy-to-hard, SPL-like)", "keeps high-loss (hard-first)"


def make_env() -> gym.Env:
    return gym.make("L2T-Digits-v0", fold="student", max_iters=T_PRIME, device="cpu")


class SigmoidOfLoss:
    """A teacher whose keep probability is sigmoid(sign x loss): a known preference."""

    def __init__(self, sign: float) -> None:
        self.sign = sign
        self.loss = list(make_env().unwrapped.feature_names).index("loss")

    def keep_probabilities(self, obs: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.sign * obs[:, self.loss].astype(np.float64)))


class Constant:
    def __init__(self, p) -> None:
        self.p = p

    def keep_probabilities(self, obs: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.p, dtype=float), (len(obs),)).copy()


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open() as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


# -- the script, end to end ----------------------------------------------------------------------
def analyze_script(*args: str, expect: int = 0):
    return run_script("benchmarks/analyze_teacher.py", *args, expect=expect)


def test_smoke_run_writes_plausible_files(tmp_path):
    out = tmp_path / "analysis"
    common = ["--env-arg", f"max_iters={T_PRIME}", "--seeds", "0", "1", "--device", "cpu"]
    printed = analyze_script("--train-episodes", "2", *common, "--out", str(out)).stdout
    for name in ("loss_margin.png", "per_class.png", "binned.csv", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "teacher.safetensors").is_file()

    columns, rows = read_csv(out / "binned.csv")
    assert tuple(columns) == at.CSV_COLUMNS
    assert columns[-4:] == ["keep_prob_mean", "keep_prob_q25", "keep_prob_q75", "kept_rate"]
    for r in rows:
        mean, q25, q75, kept = (float(r[k]) for k in columns[-4:])
        assert 0.0 <= q25 <= q75 <= 1.0 and 0.0 <= mean <= 1.0 and 0.0 <= kept <= 1.0
        assert int(r["n"]) > 0
        lo, x, hi = float(r["lo"]), float(r["x_mean"]), float(r["hi"])
        assert lo - 1e-4 <= x <= hi + 1e-4
    for feature, low, high in (("loss", 0.0, 50.0), ("margin", -1.0, 1.0), ("label", 0, 9)):
        mine = [r for r in rows if r["feature"] == feature]
        assert {r["phase"] for r in mine} == {"early", "middle", "late"}, feature
        assert all(low <= float(r["x_mean"]) <= high for r in mine), feature
    # Every analysed row falls in exactly one loss, one margin and one class bin of its phase.
    for phase in ("early", "middle", "late"):
        counts = {
            f: sum(int(r["n"]) for r in rows if r["phase"] == phase and r["feature"] == f)
            for f in ("loss", "margin", "label")
        }
        assert len(set(counts.values())) == 1, counts
    total = sum(int(r["n"]) for r in rows if r["feature"] == "loss")
    # Two runs of 9 iterations with M = 32: at least 2 x 9 x 32 candidates, none subsampled.
    assert total >= 2 * T_PRIME * 32
    summary = (out / "summary.md").read_text()
    assert summary in printed and f"rows analysed {total}" in summary
    assert all(f"| {phase} |" in summary for phase in ("early", "middle", "late"))

    # The saved teacher, analysed from its file, gives the very same numbers: same seeds, same
    # decisions.
    again = tmp_path / "again"
    analyze_script("--teacher", str(out / "teacher.safetensors"), *common, "--out", str(again))
    assert (again / "binned.csv").read_text() == (out / "binned.csv").read_text()
    assert not (again / "teacher.safetensors").exists()


def test_untrained_teacher_shows_no_preference(tmp_path):
    # Its p moves by thousandths with loss, yet Spearman's rho alone would call that strong.
    records = at.analyze(
        BernoulliTeacher(make_env().unwrapped.feature_names, seed=0), make_env, [0]
    )
    for s in at.phase_stats(records):
        assert s["verdict"].startswith("no clear preference"), s


# -- analyze --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("sign", "expected"), [(-1.0, EASY), (1.0, HARD)])
def test_synthetic_teachers_get_their_verdict(sign, expected):
    records = at.analyze(SigmoidOfLoss(sign), make_env, [0])
    stats = at.phase_stats(records)
    assert [s["phase"] for s in stats] == ["early", "middle", "late"]
    for s in stats:
        assert s["rows"] > 0 and s["verdict"] == expected, s
        # p is a monotone function of loss: a perfect rank correlation, of the teacher's sign,
        # but for the high losses whose p rounds to 1.0 in float32 (ties in p, not in loss).
        assert s["rho_loss"] == pytest.approx(sign, abs=1e-4)
        assert s["rho_margin"] * sign < 0  # margin falls as loss rises
        assert s["delta"] * sign > at.MIN_DELTA
        # Within a batch the rank orders as the loss does; across batches it does not, so the
        # correlation with rank is of the same sign but weaker.
        assert 0 < s["rho_rank"] * sign < abs(s["rho_loss"])
    # The rank is the loss's within its batch of M = 32: 32 distinct values per batch, 0 and 1
    # among them.
    first = records.iteration == records.iteration.min()
    batch = records.loss_rank[first][:32]
    assert sorted(batch) == pytest.approx(np.arange(32) / 31)


def test_phases_are_thirds_of_each_runs_iterations():
    records = at.analyze(Constant(0.7), make_env, [0, 1])
    assert [r.iterations for r in records.runs] == [T_PRIME, T_PRIME]
    for k, iterations in enumerate(({0, 1, 2}, {3, 4, 5}, {6, 7, 8})):
        assert set(records.iteration[records.phase == k].tolist()) == iterations
    np.testing.assert_allclose(records.run_progress, records.iteration / T_PRIME, rtol=1e-6)
    # The iteration feature is the clock over T', here the iteration itself over T'.
    np.testing.assert_allclose(records.clock_progress, records.iteration / T_PRIME, rtol=1e-6)
    assert set(records.label.tolist()) <= set(range(10)) and records.num_classes == 10


def test_bernoulli_teacher_acts_as_in_run_episode():
    teacher = BernoulliTeacher(make_env().unwrapped.feature_names, init_keep=0.6, seed=3)
    records = at.analyze(teacher, make_env, [0, 1])
    env = make_env()
    for run in records.runs:
        result = run_episode(env, teacher, seed=run.seed)
        assert (run.instances_seen, run.kept_instances) == (
            result.instances_seen,
            result.kept_instances,
        )
        assert (run.iterations, run.teacher_steps) == (result.iterations, result.teacher_steps)
    assert 0.4 < records.kept.mean() < 0.8  # sampled, not thresholded at 0.5


def test_subsample_is_bounded_uniform_and_leaves_the_decisions_alone():
    full = at.analyze(Constant(0.5), make_env, [0, 1])
    capped = at.analyze(Constant(0.5), make_env, [0, 1], max_rows_per_run=40)
    assert capped.runs == full.runs  # the same episodes, only fewer rows recorded
    assert len(capped) == 80 and set(capped.phase.tolist()) == {0, 1, 2}

    def rows(r, seed: int) -> set[tuple[int, float]]:
        mine = r.seed == seed
        return set(zip(r.iteration[mine].tolist(), r.loss[mine].tolist(), strict=True))

    for seed in (0, 1):
        assert rows(capped, seed) <= rows(full, seed)


def test_row_sample_keeps_the_smallest_keys_however_it_is_trimmed():
    keys = np.random.default_rng(5).random(1000)
    expected = np.sort(np.argsort(keys)[:30])
    for chunk in (7, 500):
        sample = at._RowSample(30, np.random.default_rng(5))
        for start in range(0, 1000, chunk):
            sample.add(loss=np.arange(start, min(start + chunk, 1000), dtype=np.float32))
            assert sample.size <= 60
        np.testing.assert_array_equal(sample.rows()["loss"], expected)


# -- the verdict ----------------------------------------------------------------------------------
def test_verdict_on_known_inputs():
    assert at.verdict(-0.5, -0.3) == EASY
    assert at.verdict(0.5, 0.3) == HARD
    assert at.verdict(-0.1, -0.3) == EASY  # |rho| = 0.1 is not below the threshold
    assert at.verdict(0.7) == HARD  # without a delta only rho decides
    assert at.verdict(0.09, 0.5).startswith("no clear preference (|rho| < 0.1)")
    assert at.verdict(-0.05).startswith("no clear preference")
    assert at.verdict(-0.9, -0.001).startswith("no clear preference (p moves")
    assert at.verdict(math.nan).startswith("undetermined")


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("p", "message"),
    [([0.5, 0.5], r"shape \(32,\)"), (1.5, r"\[0, 1\]"), (math.nan, r"\[0, 1\]")],
)
def test_bad_keep_probabilities_are_refused(p, message):
    with pytest.raises(ValueError, match=message):
        at.analyze(Constant(p), make_env, [0])


def test_bad_arguments_are_refused(tmp_path):
    # The experiment's own checks (unknown task, env arguments, episodes) are
    # tests/test_experiment.py's; here the script turns them into exit status 2.
    out = ["--out", str(tmp_path), "--device", "cpu"]
    err = analyze_script("--train-episodes", "1", "--env-arg", "fold=teacher", *out, expect=2)
    assert err.stderr.startswith("analyze_teacher: error: ") and "--fold" in err.stderr
    err = analyze_script("--teacher", str(tmp_path / "missing.safetensors"), *out, expect=2)
    assert "no teacher file" in err.stderr
    assert "one of the arguments" in analyze_script(*out, expect=2).stderr
    with pytest.raises(ValueError, match="at least one seed"):
        at.analyze(Constant(0.5), make_env, [])


def test_optional_columns_the_env_shows_get_their_own_rho():
    def with_history() -> gym.Env:
        extra = ("loss_rank", "loss_vs_mean", "loss_change")
        return gym.make(
            "L2T-Digits-v0", fold="student", max_iters=T_PRIME, device="cpu", extra_features=extra
        )

    class FollowsLossVsMean:  # p is the loss_vs_mean column itself: a perfect rank correlation
        column = list(with_history().unwrapped.feature_names).index("loss_vs_mean")

        def keep_probabilities(self, obs: np.ndarray) -> np.ndarray:
            return obs[:, self.column].astype(np.float64)

    records = at.analyze(FollowsLossVsMean(), with_history, [0])
    assert list(records.optional) == ["loss_vs_mean", "loss_change"]  # loss_rank is recorded apart
    assert all(len(v) == len(records) for v in records.optional.values())
    np.testing.assert_array_equal(records.optional["loss_vs_mean"], records.keep_prob)
    for s in at.phase_stats(records):
        assert s["rho_loss_vs_mean"] == pytest.approx(1.0)
        # NaN where no instance came back within the phase (the column is then constant 0.5).
        rho = s["rho_loss_change"]
        assert math.isnan(rho) or -1.0 <= rho <= 1.0
    summary = at._summary(records, at.phase_stats(records), ())
    assert "| rho(p, loss_vs_mean) | rho(p, loss_change) |" in summary
    assert "| +1.000 |" in summary
    # The paper's observation has no optional columns, and no extra table columns.
    plain = at.analyze(Constant(0.5), make_env, [0])
    assert plain.optional == {} and "rho(p, loss_vs_mean)" not in at._summary(plain, [], ())
