"""What every executor must match in process: the same training run, the same comparison."""

from __future__ import annotations

import dataclasses

import torch

from l2t_gym.teachers import BernoulliTeacher, InfoBatch, LossRank, NoTeach


def weights(teacher):
    return [p.detach().clone() for p in teacher.policy.parameters()]


def assert_same_run(a, b):
    """Two (history, weights) pairs of a training run are the same, bit for bit."""
    (history_a, weights_a), (history_b, weights_b) = a, b
    assert history_a == history_b
    for x, y in zip(weights_a, weights_b, strict=True):
        assert torch.equal(x, y)


def teachers_to_compare(names):
    return {
        "NoTeach": NoTeach(),
        "LossRank": LossRank(0.5),
        "InfoBatch": InfoBatch(0.5),
        "L2T": BernoulliTeacher(names, init_keep=0.6, seed=0),
    }


def assert_same_results(ours, theirs):
    """Two comparisons (name -> results) are the same but for the seconds."""
    assert list(ours) == list(theirs)

    def timeless(r):  # as text: NaN test accuracies are equal there
        curve = [p._replace(seconds=0.0) for p in r.curve]
        return repr(dataclasses.replace(r, seconds=0.0, curve=curve))

    for name in ours:
        assert [timeless(r) for r in ours[name]] == [timeless(r) for r in theirs[name]], name
