"""Your own agent in 40 lines: a logistic keep-rule, trained by REINFORCE, as an l2t_gym Teacher.

    python examples/custom_agent.py [--episodes 30] [--students 10] [--lr 20] [--seed 0]

The agent keeps instance m with probability p_m = sigmoid(w . x_m + b), where x_m is three named
features of its row (loss, margin, training progress). It learns w and b on the teacher fold:
each episode is one student trained from scratch with the agent deciding, and after it the agent
moves along sum_t sum_m (a_tm - p_tm) x_tm (R - baseline), the REINFORCE gradient of a Bernoulli
policy (a = 1 kept, 0 dropped; dropped instances count through log(1 - p)). It is then deployed on
fresh students of the student fold against NoTeach (keep everything), with the same seeds.

Prints each training episode, the learned weights, then one table row per teacher: students
that reached tau, the student iterations, effective instances and candidate batches it took
(mean ± std over the students that reached tau), and the keep ratio. 5-10 s with the defaults on
one CPU core.

What to expect: the weights move a little and the agent does not beat NoTeach. A few dozen
episodes are far too few against the seed-to-seed noise of i_tau (keep-all alone needs 27-66
iterations on the first ten student seeds). More episodes or a larger --lr do not fix that on
their own: on some seeds the rule drifts towards dropping the high-loss instances, the student
then never reaches tau, every reward is 0 and learning stalls there (a failed run's 0 is barely
below a slow success's ~0.4). The point is the interface, which is all any teacher needs:
subclass ``l2t_gym.teachers.Teacher``, look columns up by name in ``reset``, return a keep mask
from ``act``. Such a teacher runs in a plain Gymnasium loop, in ``run_episode`` and in
``l2t_gym.evaluation``.
"""

import argparse
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch

import l2t_gym  # noqa: F401  (registers the L2T-* envs)
from l2t_gym.evaluation import summarise
from l2t_gym.report import format_table
from l2t_gym.teachers import NoTeach, Teacher, run_episode


class LogisticTeacher(Teacher):
    """Keeps each instance with probability sigmoid(w . x + b) of a few named features."""

    FEATURES = ("loss", "margin", "iteration")

    def __init__(self, init_keep: float = 0.9, seed: int | None = None) -> None:
        super().__init__(seed)  # gives self.rng, reseeded by reset(seed=...)
        self.w = np.zeros(len(self.FEATURES))
        # Start by keeping most data, i.e. near plain training, and let learning move away.
        self.b = float(np.log(init_keep / (1 - init_keep)))

    def reset(self, feature_names: Sequence[str], *, seed: int | None = None) -> None:
        super().reset(feature_names, seed=seed)
        # By name, not by position: the same agent works whatever the env's column layout.
        self.cols = [self.column(name) for name in self.FEATURES]
        self.episode = []  # (features, keep, p) per step, for the update after the episode

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = self.rows(obs)[:, self.cols]
        p = 1 / (1 + np.exp(-(x @ self.w + self.b)))
        keep = self.rng.random(len(p)) < p
        self.episode.append((x, keep, p))
        return keep

    def reinforce(self, advantage: float, lr: float) -> None:
        x, keep, p = (np.concatenate(parts) for parts in zip(*self.episode, strict=True))
        # d log pi(a | x) / d logit = a - p, for kept (a=1) and dropped (a=0) instances alike.
        g = (keep - p) * advantage
        # Mean, not sum, over the episode's decisions: one learning rate then suits any batch
        # size and episode length (a fast student sees fewer batches than a slow one).
        self.w += lr * (g @ x) / len(g)
        self.b += lr * g.mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--episodes", type=int, default=30, help="training episodes (teacher fold)")
    ap.add_argument("--students", type=int, default=10, help="fresh students per teacher")
    ap.add_argument("--lr", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # small students run several times faster on one thread than on many

    agent = LogisticTeacher(seed=args.seed)
    env = gym.make("L2T-Digits-v0", fold="teacher", device="cpu")
    baseline = None
    for episode in range(args.episodes):
        # A fresh student every episode: run_episode resets the env and the agent with the seed.
        result = run_episode(env, agent, seed=args.seed * 10_000 + episode)
        # A moving average of past rewards as the baseline: the first episode only sets it.
        baseline = result.reward if baseline is None else baseline
        agent.reinforce(result.reward - baseline, args.lr)
        baseline = 0.9 * baseline + 0.1 * result.reward
        print(
            f"episode {episode:3d}  reward {result.reward:.3f}  i={result.iterations:3d}  "
            f"keep {result.keep_ratio:.2f}"
        )
    weights = ", ".join(f"{n} {w:+.2f}" for n, w in zip(agent.FEATURES, agent.w, strict=True))
    print(f"learned: {weights}, bias {agent.b:+.2f}")

    env = gym.make("L2T-Digits-v0", fold="student", device="cpu")
    seeds = range(args.students)
    teachers = {"NoTeach": NoTeach(), "logistic": agent}
    table = [
        summarise(n, [run_episode(env, t, seed=s) for s in seeds]) for n, t in teachers.items()
    ]
    print(f"\nfresh students on the student fold, seeds 0-{args.students - 1}:")
    print(format_table(table))


if __name__ == "__main__":
    main()
