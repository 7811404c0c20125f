"""Smoke runs of examples/quickstart.py, custom_agent.py and sb3_ppo_teacher.py with the tiniest
budgets: each must exit cleanly and print what its docstring promises."""

from __future__ import annotations

import math
import re

from script_runner import run as run_script


def run(script: str, *args: str) -> str:
    return run_script(f"examples/{script}", *args).stdout


def table_row(out: str, teacher: str) -> list[str]:
    """The cells of a teacher's row in format_table's output."""
    (line,) = [ln for ln in out.splitlines() if ln.startswith(teacher + " ")]
    return line[len(teacher) :].split()


def test_quickstart():
    out = run("quickstart.py", "--seed", "1")
    values = dict(re.findall(r"^(\w[\w ]*?)\s{2,}(\S+)", out, flags=re.M))
    iterations, reward = int(values["student iterations"]), float(values["reward"])
    assert values["reached tau"] in ("True", "False")
    assert 0 < iterations <= 100
    # The printed reward is the paper's: -log(i_tau / T') when tau was reached, else 0.
    expected = -math.log(iterations / 100) if values["reached tau"] == "True" else 0.0
    assert abs(reward - expected) < 1e-3  # printed to 3 decimals
    # Paper mode: every student iteration trains on exactly M = 32 (Digits) kept instances.
    effective, seen = map(int, re.search(r"effective instances\s+(\d+) of (\d+)", out).groups())
    assert effective == 32 * iterations and effective <= seen
    assert int(values["candidate batches"]) * 32 == seen


def test_custom_agent():
    out = run("custom_agent.py", "--episodes", "2", "--students", "2")
    assert len(re.findall(r"^episode\s+\d+\s+reward", out, flags=re.M)) == 2
    assert re.search(r"^learned: loss [+-]\d\.\d\d, margin .*, bias [+-]\d", out, flags=re.M)
    noteach, agent = table_row(out, "NoTeach"), table_row(out, "logistic")
    assert noteach[0] == "2/2" and noteach[-1] == "1.00"  # keep-all reaches tau, keeps all
    assert agent[0].endswith("/2") and 0.0 < float(agent[-1]) < 1.0


def test_sb3_ppo_teacher(tmp_path):
    model = tmp_path / "ppo.zip"
    out = run(
        "sb3_ppo_teacher.py",
        *("--timesteps", "64", "--n-steps", "32", "--students", "2", "--out", str(model)),
    )
    assert f"model saved to {model}" in out and model.is_file()
    ppo, noteach = table_row(out, "PPO"), table_row(out, "NoTeach")
    assert ppo[0].endswith("/2") and noteach[0] == "2/2"
    keep = float(ppo[-1])
    assert 0.3 < keep < 0.7  # an untrained InstancePolicy keeps about --init-keep (0.5)
    assert f"RandTeach {keep:.2f}" in out
