"""Smoke runs of the examples and benchmarks with tiny budgets: they must run and print their
tables, not measure anything."""

from __future__ import annotations

import numpy as np
import pytest
from script_runner import run as run_script


def run(script: str, *args: str) -> str:
    return run_script(script, *args).stdout


def test_keep_vs_random_example():
    out = run("examples/keep_vs_random.py", "--episodes", "2")
    assert "keep-all" in out and "random p=0.5" in out and "2/2" in out


def test_overhead_benchmark(tmp_path):
    csv = tmp_path / "overhead.csv"
    out = run("benchmarks/overhead.py", "--iters", "5", "--repeats", "2", "--out", str(csv))
    assert "overhead ratio" in out and "extra_features=none" in out
    extra = ("--extra-features", "all")
    out = run("benchmarks/overhead.py", "--iters", "5", "--repeats", "2", *extra, "--out", str(csv))
    assert "extra_features=loss_rank,margin_rank" in out and "loss_change" in out
    assert len(csv.read_text().splitlines()) == 3


def test_throughput_benchmark_with_a_filtering_teacher(tmp_path):
    args = ["--sizes", "1", "2", "--steps", "10", "--repeats", "1", "--keep", "0.3"]
    out = run("benchmarks/throughput.py", *args, "--out", str(tmp_path))
    assert "(keep 0.3)" in out and "x single" in out
    rows = (tmp_path / "throughput.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].endswith(",keep") and rows[1].endswith(",0.3")
    assert (tmp_path / "throughput.png").is_file()


def test_gpu_check_runs_on_cpu(tmp_path):
    args = [
        "--device",
        "cpu",
        "--max-iters",
        "2",
        "--precision-iters",
        "2",
        "--students",
        "resnet20",
        "--blocks",
        "1",
        "--random-size",
        "400",
        "--cifar-batch",
        "8",
        "--vector-sizes",
        "2",
        "--precision-seeds",
        "0",
        "--settings",
        "fp32",
        "bf16+channels_last",
        "--out",
        str(tmp_path),
    ]
    out = run("benchmarks/gpu_check.py", *args)
    # On a CPU section (a) compares the CPU with itself: two runs of the same seeds must be
    # bit-identical there (the CUDA comparison itself needs a GPU, see benchmarks/RESULTS.md).
    assert "(a) max |obs_cpu - obs_cpu|: Digits 0.00e+00" in out
    assert "after each of 3 keep-all steps 0.00e+00, 0.00e+00, 0.00e+00, 0.00e+00" in out
    assert "(d) digits vector env N=2" in out
    assert "(b) keep-all ResNet-32 episode (fp32), seed 0" in out
    assert "(g) resnet20 fp32 M=8" in out
    names = ("gpu_overhead.csv", "gpu_vector.csv", "gpu_cifar_curve.csv", "gpu_students.csv")
    for name in names:
        assert (tmp_path / name).exists()


def test_fuzz_inputs_finds_no_fault(tmp_path):
    out = run(
        "benchmarks/fuzz_inputs.py", "--arguments", "60", "--actions", "80", "--out", str(tmp_path)
    )
    assert "arguments  refused clearly" in out and "actions    refused clearly" in out
    assert "ACCEPTED" not in out and "REFUSED" not in out and "\n0 faults" in out


def test_ray_scaling_benchmark(tmp_path):
    pytest.importorskip("ray")
    args = ["--workers", "1", "--students", "2", "--repeats", "1", "--env-arg", "max_iters=10"]
    out = run("benchmarks/ray_scaling.py", *args, "--out", str(tmp_path))
    assert "ray, 1 worker" in out and "in process" in out and "round trip" in out
    rows = (tmp_path / "ray_scaling_digits.csv").read_text().splitlines()
    assert len(rows) == 3 and (tmp_path / "ray_scaling_digits.png").is_file()


def test_candidate_cost_benchmark_fits_its_own_runs(tmp_path):
    seeds = ["--seeds", "0", "1", "2", "3", "4", "5"]
    teacher = ["--teacher", "rand", "--teacher-arg", "keep_prob=0.3"]
    args = [*teacher, *seeds, "--env-arg", "max_iters=30", "--out", str(tmp_path)]
    out = run("benchmarks/candidate_cost.py", *args)
    assert "candidate_cost = b / a" in out and "1 thread(s)" in out
    lines = (tmp_path / "runs.csv").read_text().splitlines()
    assert lines[0] == "teacher,seed,iterations,candidate_batches,seconds,tau"
    rows = [line.split(",") for line in lines[1:]]
    assert [r[0] for r in rows] == ["teacher", "NoTeach"] * 6
    taught = np.array([[float(r[2]), float(r[3]), float(r[4])] for r in rows if r[0] == "teacher"])
    (a, b), *_ = np.linalg.lstsq(taught[:, :2], taught[:, 2], rcond=None)
    assert f"candidate_cost = b / a = **{b / a:.3f}**" in (tmp_path / "summary.md").read_text()
    # NoTeach shows one candidate batch per iteration in every run: no fit can split the costs.
    proc = run_script(
        "benchmarks/candidate_cost.py",
        "--teacher",
        "noteach",
        *seeds[:3],
        "--env-arg",
        "max_iters=10",
        "--out",
        str(tmp_path),
        expect=1,
    )
    assert "cannot be told apart" in proc.stderr


def test_steps_per_second_with_a_filtering_teacher_trains_less_often():
    from l2t_gym import L2TEnv
    from l2t_gym.speed import steps_per_second

    env = L2TEnv("digits", device="cpu", tau=1.0, max_iters=10**6)
    env.reset(seed=0)
    assert steps_per_second(env, 30, lambda: None, keep=0.3) > 0
    _, _, _, _, info = env.step(np.zeros(env.batch_size, dtype=bool))
    # 3 warm-up + 30 timed + 1 steps shown, about a third of their instances kept.
    assert info["teacher_step"] == 34 and 4 <= info["iteration"] <= 16
    for keep in (0.0, 1.5):
        with pytest.raises(ValueError, match="keep must lie in"):
            steps_per_second(env, 2, lambda: None, keep)
