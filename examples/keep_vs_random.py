"""Keep-all against random-drop teachers on the embedded Digits task (offline, CPU, seconds).

    python examples/keep_vs_random.py --episodes 10

Prints, per teacher, the student iterations and effective training instances to reach tau, the
candidate batches the teacher looked at, and the episode's reward.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

import l2t_gym  # noqa: F401  (registers the envs)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument(
        "--keep-prob", type=float, default=0.5, help="random teacher's keep probability"
    )
    ap.add_argument("--fold", default="student", choices=["teacher", "student"])
    args = ap.parse_args()
    torch.set_num_threads(1)  # small students run fastest on one thread

    env = gym.make("L2T-Digits-v0", fold=args.fold, device="cpu")
    teachers = {
        "keep-all": lambda obs, rng: np.ones(len(obs), dtype=bool),
        f"random p={args.keep_prob}": lambda obs, rng: rng.random(len(obs)) < args.keep_prob,
    }
    print(f"L2T-Digits-v0, {args.fold} fold, tau={env.unwrapped.tau}, T'={env.unwrapped.max_iters}")
    print(
        f"{'teacher':16} {'reached':>8} {'iters to tau':>14} {'instances':>10} "
        f"{'cand. batches':>13} {'reward':>7} {'s/episode':>10}"
    )
    for name, teacher in teachers.items():
        rows = []
        for seed in range(args.episodes):
            rng = np.random.default_rng(seed)
            start = time.perf_counter()
            obs, info = env.reset(seed=seed)
            done, reward = False, 0.0
            while not done:
                obs, reward, terminated, truncated, info = env.step(teacher(obs, rng))
                done = terminated or truncated
            rows.append(
                (
                    info["reached_tau"],
                    info["iteration"],
                    info["effective_instances"],
                    info["teacher_step"],
                    reward,
                    time.perf_counter() - start,
                )
            )
        reached = [r for r in rows if r[0]]

        def med(k: int, reached=reached) -> float:
            return statistics.median(r[k] for r in reached) if reached else float("nan")

        print(
            f"{name:16} {len(reached):>5}/{len(rows):<2} {med(1):>14.1f} {med(2):>10.0f} "
            f"{med(3):>13.1f} {statistics.mean(r[4] for r in rows):>7.3f} "
            f"{statistics.median(r[5] for r in rows):>10.3f}"
        )
    print("(medians over episodes that reached tau; reward is the mean over all episodes)")


if __name__ == "__main__":
    main()
