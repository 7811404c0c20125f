"""Quickstart: one student trained on the embedded Digits task, taught by a one-line rule.

    python examples/quickstart.py [--seed 0] [--min-loss 0.05] [--fold student]

Every step shows the teacher a candidate minibatch as an (M, d) matrix of per-instance features;
this teacher keeps the instances whose loss is at least --min-loss (the ones the student has not
learned yet). Prints the episode's info at the end: student iterations, whether dev accuracy
reached tau, the reward, effective instances (kept and trained on) of the instances seen, and
the candidate batches (teacher steps).
Runs offline on a CPU in a few seconds.
"""

import argparse

import gymnasium as gym
import torch

import l2t_gym  # noqa: F401  (registers the L2T-* envs)

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--min-loss", type=float, default=0.05, help="keep instances with loss >= this")
ap.add_argument("--fold", default="student", choices=["teacher", "student"])
args = ap.parse_args()
torch.set_num_threads(1)  # small students run several times faster on one thread than on many

env = gym.make("L2T-Digits-v0", fold=args.fold, device="cpu")
names = env.unwrapped.feature_names  # column names, in order: read features by name, not index
loss = names.index("loss")

obs, info = env.reset(seed=args.seed)
done = False
while not done:
    keep = obs[:, loss] >= args.min_loss  # any rule, policy or agent goes here
    obs, reward, terminated, truncated, info = env.step(keep)
    done = terminated or truncated

print(f"L2T-Digits-v0 ({args.fold} fold): tau={env.unwrapped.tau}, T'={env.unwrapped.max_iters}")
print(f"student iterations   {info['iteration']}")
print(f"reached tau          {info['reached_tau']}")
print(f"reward               {reward:.3f}")
print(f"effective instances  {info['effective_instances']} of {info['instances_seen']} seen")
print(f"candidate batches    {info['teacher_step']}")
print(f"final dev accuracy   {info['final_dev_accuracy']:.3f}")
