"""Recorded trajectories replay unchanged: the single env bit for bit on CPU, the vector env to
float tolerance (see ``fixtures/record_trajectories.py`` for the cases and the commit they were
recorded on)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from record_trajectories import CASES, FIXTURE, run  # noqa: E402

RECORDED = dict(np.load(FIXTURE))


def recorded(name: str) -> dict[str, np.ndarray]:
    prefix = f"{name}/"
    return {k[len(prefix) :]: v for k, v in RECORDED.items() if k.startswith(prefix)}


@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case[0] is None])
def test_single_env_replays_bit_for_bit(name):
    old, new = recorded(name), {k.split("/", 1)[1]: v for k, v in run(name).items()}
    np.testing.assert_array_equal(new["actions"], old["actions"])
    for key in old:
        if key == "obs_sha256":
            continue  # compared last: the sums say where two trajectories part
        np.testing.assert_array_equal(new[key], old[key], err_msg=f"{name}: {key}")
    np.testing.assert_array_equal(new["obs_sha256"], old["obs_sha256"], err_msg=name)


@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case[0] is not None])
def test_vector_env_replays_to_float_tolerance(name):
    old, new = recorded(name), {k.split("/", 1)[1]: v for k, v in run(name).items()}
    exact = ("terminated", "truncated", "iteration", "teacher_step", "effective_instances")
    for key in (*exact, "pool_size", "instances_seen", "kept_instances", "reached_tau"):
        np.testing.assert_array_equal(new[key], old[key], err_msg=f"{name}: {key}")
    for key in ("reward", "clock", "dev_accuracy", "best_dev_accuracy", "final_dev_accuracy"):
        np.testing.assert_allclose(new[key], old[key], atol=1e-6, err_msg=f"{name}: {key}")
    for key in ("obs_row_sums", "obs_column_sums", "obs_first"):
        np.testing.assert_allclose(new[key], old[key], rtol=1e-4, atol=1e-4, err_msg=name)
