"""Made-up teacher results with known costs, for the tests of evaluation and report."""

from __future__ import annotations

import math

from l2t_gym.teachers import CurvePoint, EpisodeResult


def fake_run(iterations: int, reached: bool = True, keep: float = 1.0) -> EpisodeResult:
    """A run that gains 0.02 dev accuracy per iteration on M = 32, keeping ``keep``."""
    curve = [
        CurvePoint(
            effective_instances=32 * i,
            iteration=i,
            teacher_step=round(i / keep),
            dev_accuracy=min(0.1 + 0.02 * i, 0.95),
            seconds=0.001 * i,
            kept_instances=32 * i,
            instances_seen=32 * round(i / keep),
            test_accuracy=min(0.1 + 0.02 * i, 0.95) - 0.01,
        )
        for i in range(iterations + 1)
    ]
    end = curve[-1]
    return EpisodeResult(
        reached_tau=reached,
        truncated=False,
        iterations=iterations,
        teacher_steps=end.teacher_step,
        effective_instances=end.effective_instances,
        instances_seen=end.instances_seen,
        kept_instances=end.kept_instances,
        keep_ratio=keep,
        reward=-math.log(iterations / 100) if reached else 0.0,
        final_dev_accuracy=end.dev_accuracy,
        test_accuracy=end.test_accuracy,
        seconds=end.seconds,
        curve=curve,
    )


def three_teachers() -> dict[str, list[EpisodeResult]]:
    """Four students each: NoTeach, a cheaper LossRank, and an L2T teacher whose second student
    never reaches tau (it stops at T' = 100)."""
    return {
        "NoTeach": [fake_run(i) for i in (40, 50, 45, 60)],
        "LossRank": [fake_run(i, keep=0.25) for i in (30, 41, 33, 48)],
        "L2T": [fake_run(30, keep=0.5), fake_run(100, reached=False, keep=0.5)]
        + [fake_run(i, keep=0.5) for i in (35, 50)],
    }
