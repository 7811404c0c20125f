"""One prepared GPU check: CUDA against CPU, keep-all ResNet-32 episodes on real CIFAR-10, speed.

    python benchmarks/gpu_check.py --offline-cifar10 ../shared/data --out DIR --budget-s 330

Data: real CIFAR-10 from the JPEG mirror (``--offline-cifar10``, decoded once and cached, see
``l2t_gym.data.cifar10_jpg``) or torchvision's files (``--data-root``); else random images of
the right shape, which only smoke-test the script.

(a) Digits and ResNet-32 (M = 32, augmentation off), same seeds and actions on CPU and CUDA:
    observations must agree to float tolerance (bit-identity is a CPU promise only).
(b) Keep-all ResNet-32 episodes at the CIFAR-10 task's defaults (tau, T', M, optimiser,
    augmentation), to tau or T', timed from reset to the last step: i_tau and seconds
    (the goal: under 60 s on one H100/H200), dev curve in ``gpu_cifar_curve.csv``.
(c) The env's time per iteration against a bare PyTorch loop (benchmarks/overhead.py's), CIFAR-10
    and Digits, interleaved blocks.
(d) The native vector env's student steps/s at N = 1, 4, 16 against one env, keep-all.
(f) Host synchronisations per step, counted with ``torch.cuda.set_sync_debug_mode("warn")``:
    one (the observation copy) plus one per dev evaluation is all there may be, for the single
    env (fp32, and bf16 + channels-last, keep-all and partial masks) and the vector env.
(e) The student-speed options: keep-all ResNet-32 episodes, same seeds, in fp32, bf16,
    channels-last, both, and ``compile`` (``--settings``), each after a warm-up episode that
    pays for autotuning and compiling: final dev accuracy, i_tau for ``--precision-tau`` and time
    per iteration. Compiled settings run last and are skipped when ``--budget-s`` is nearly spent.
(g) Time per keep-all iteration for other students (``--students``; ResNet-110 is the transfer
    experiment's), fp32 and bf16 + channels-last.
``--sections`` runs a subset (default all).
cuDNN's autotuner is on for every side, as a GPU user would have it.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from l2t_gym import TASKS, L2TEnv
from l2t_gym.data import RawData
from l2t_gym.data.cifar10_jpg import load_cifar10_jpg
from l2t_gym.speed import BareLoop, interleaved, steps_per_second, synchronizer
from l2t_gym.vector import L2TVectorEnv


def cifar_data(args: argparse.Namespace) -> tuple[dict, str]:
    """The CIFAR-10 keywords for every env of the script, and what the data are."""
    if args.offline_cifar10:
        raw = load_cifar10_jpg(args.offline_cifar10, cache_dir=args.cache_dir)
        return {"data": raw}, f"real CIFAR-10 ({len(raw.y_train):,} training JPEGs, offline)"
    if args.data_root and (Path(args.data_root) / "cifar-10-batches-py").is_dir():
        return {"data_root": args.data_root, "download": False}, "real CIFAR-10 (torchvision)"
    n = args.random_size
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
    y = np.arange(n) % 10
    raw = RawData.from_arrays(x, y, x[: n // 10], y[: n // 10], 10)
    return {"data": raw}, "random data (no signal: a smoke test)"


def trajectory(env: L2TEnv, seed: int, steps: int, keep_prob: float) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(rng.random(len(obs)) < keep_prob)
        out.append(obs)
        if terminated or truncated:
            break
    return out


def compare_devices(make, device, seeds, steps, keep_prob) -> list[float]:
    """Largest |obs_cpu - obs_device| at reset and after each step, over ``seeds``: training
    amplifies rounding step by step, so where the two first part matters."""
    worst: list[float] = []
    for seed in seeds:
        cpu = trajectory(make("cpu"), seed, steps, keep_prob)
        gpu = trajectory(make(device), seed, steps, keep_prob)
        for t, (a, b) in enumerate(zip(cpu, gpu, strict=False)):
            d = float(np.abs(a - b).max())
            if t < len(worst):
                worst[t] = max(worst[t], d)
            else:
                worst.append(d)
    return worst


def episode_curve(env: L2TEnv, seed: int, sync) -> list[tuple[int, float, float]]:
    """Keep-all to the episode's end: (iteration, dev accuracy, seconds) at every dev evaluation
    and at the last step."""
    obs, info = env.reset(seed=seed)
    keep = np.ones(env.batch_size, dtype=bool)
    sync()
    start, curve, done = time.perf_counter(), [(0, info["dev_accuracy"], 0.0)], False
    while not done:
        obs, _, terminated, truncated, info = env.step(keep)
        done = terminated or truncated
        if info["iteration"] != curve[-1][0] and (info["iteration"] % env.eval_every == 0 or done):
            sync()
            curve.append((info["iteration"], info["dev_accuracy"], time.perf_counter() - start))
    return curve


SETTINGS: dict[str, dict] = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "channels_last": {"channels_last": True},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
    "compile": {"compile": True},
    "bf16+channels_last+compile": {"precision": "bf16", "channels_last": True, "compile": True},
}


def compare_settings(make, settings, seeds, tau, sync) -> list[tuple]:
    """(e): one keep-all episode per setting and seed; seeds outermost, so that any drift in the
    device's speed falls on every setting alike. Rows: setting, seed, final dev accuracy, i_tau
    (None if not reached), iterations, seconds."""
    for name in settings:  # cuDNN's autotuner and any compiler see each setting once first
        episode_curve(make(SETTINGS[name], warm_up=True), 1, sync)
    rows = []
    for seed in seeds:
        for name in settings:
            curve = episode_curve(make(SETTINGS[name]), seed, sync)
            hit = next((i for i, a, _ in curve if a >= tau), None)
            rows.append((name, seed, curve[-1][1], hit, curve[-1][0], curve[-1][2]))
    return rows


SECTIONS = ("a", "b", "c", "d", "e", "f", "g")
SYNC_WARNING = "called a synchronizing CUDA operation"


def syncs_per_step(env, actions: list[np.ndarray]) -> tuple[list[int], list[int]]:
    """(f): host synchronisations torch reports during each step, and how many the step may make:
    the observation copy, plus one dev evaluation's accuracy where one ran (iteration advanced
    to a multiple of eval_every)."""
    counts, allowed = [], []
    torch.cuda.set_sync_debug_mode("warn")
    try:
        for action in actions:
            before = _iterations(env)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                env.step(action)
            after = _iterations(env)
            evaluated = bool(np.any((after > before) & (after % _eval_every(env) == 0)))
            counts.append(sum(SYNC_WARNING in str(w.message) for w in caught))
            allowed.append(1 + int(evaluated))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return counts, allowed


def _iterations(env) -> np.ndarray:
    return np.array(env.run.iteration)


def _eval_every(env) -> int:
    return env.settings.eval_every


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--offline-cifar10", default=None, help="folder of the CIFAR-10 JPEG mirror")
    ap.add_argument("--cache-dir", default=None, help="where the decoded JPEGs are cached")
    ap.add_argument("--data-root", default=None, help="a folder holding torchvision's CIFAR-10")
    ap.add_argument("--random-size", type=int, default=10_000, help="images if no real data")
    ap.add_argument("--episode-seeds", type=int, nargs="+", default=[0], help="(b)'s episodes")
    ap.add_argument("--max-iters", type=int, default=None, help="(b)'s T' (default: the task's)")
    ap.add_argument(
        "--episode-setting", default="fp32", choices=list(SETTINGS), help="(b)'s speed options"
    )
    ap.add_argument("--cifar-batch", type=int, default=None, help="M (default: the task's)")
    ap.add_argument("--out", default="benchmarks/out")
    ap.add_argument("--device", default="cuda", help="'cpu' only to smoke-test this script")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the host side is single-threaded work, and spare "
        "OpenMP threads only spin on a busy machine)",
    )
    ap.add_argument("--blocks", type=int, default=7, help="timed blocks per side in (c)")
    ap.add_argument("--vector-sizes", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--precision-iters", type=int, default=300, help="(e)'s episodes; 0 skips")
    ap.add_argument("--precision-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--precision-tau", type=float, default=0.4, help="(e) reports i_tau for it")
    ap.add_argument(
        "--settings",
        nargs="+",
        default=["fp32", "bf16", "channels_last", "bf16+channels_last", "compile"],
        choices=list(SETTINGS),
    )
    ap.add_argument(
        "--sections",
        nargs="+",
        default=list(SECTIONS),
        choices=list(SECTIONS),
        help="the parts to run (default all)",
    )
    ap.add_argument(
        "--students",
        nargs="+",
        default=["resnet20", "resnet32", "resnet110"],
        help="(g)'s students",
    )
    ap.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="seconds for the whole script: (e)'s compiled setting and (f) are skipped when "
        "less than a minute is left",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = args.device
    started = time.perf_counter()

    def left() -> float:
        return (
            float("inf")
            if args.budget_s is None
            else args.budget_s - (time.perf_counter() - started)
        )

    if dev == "cuda" and not torch.cuda.is_available():
        sys.exit("this script checks the CUDA path, and torch sees no GPU here")
    sync = synchronizer(dev)
    torch.backends.cudnn.benchmark = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu (smoke test)"
    print(f"GPU: {gpu}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}")
    t = time.perf_counter()
    cifar, what = cifar_data(args)
    sized = {**cifar, "batch_size": args.cifar_batch}
    print(f"CIFAR-10 data: {what} [{time.perf_counter() - t:.0f}s]")

    sizes = {"cifar10": 100, "digits": 200} if dev == "cuda" else {"cifar10": 2, "digits": 20}
    # (a) CUDA against CPU.
    if "a" in args.sections:
        t = time.perf_counter()
        d_digits = compare_devices(lambda d: L2TEnv("digits", device=d), dev, range(3), 30, 0.7)
        d_cifar = compare_devices(
            # Augmentation off: its offsets come from a generator on the env's device, and CUDA's
            # stream differs from the CPU's, so with it on this would compare different images.
            lambda d: L2TEnv("cifar10", device=d, batch_size=32, augment=False, **cifar),
            dev,
            [0],
            3,
            1.0,
        )
        print(
            f"(a) max |obs_cpu - obs_{dev}|: Digits {max(d_digits):.2e} (3 seeds x 30 steps, "
            f"keep 70%); CIFAR ResNet-32 at reset and after each of 3 keep-all steps "
            f"{', '.join(f'{d:.2e}' for d in d_cifar)} (M=32, no augmentation) "
            f"[{time.perf_counter() - t:.0f}s]"
        )
        its = {}
        for d in ("cpu", dev):
            env = L2TEnv("digits", device=d)
            its[d] = []
            for seed in range(5):
                trajectory(env, seed, 10**6, 1.0)
                its[d].append(int(env.run.iteration[0]))
        print(f"    Digits keep-all i_tau, seeds 0-4: cpu {its['cpu']}, {dev} {its[dev]}")

    # (b) Keep-all ResNet-32 episodes at the task's defaults, to tau or T', timed.
    if "b" in args.sections:
        options = SETTINGS[args.episode_setting]
        n_warm = 60 if dev == "cuda" else 2
        episode_curve(
            L2TEnv("cifar10", device=dev, max_iters=n_warm, eval_every=n_warm, **sized, **options),
            1,
            sync,
        )
        env = L2TEnv("cifar10", device=dev, max_iters=args.max_iters, **sized, **options)
        s = env.settings
        rows = []
        for seed in args.episode_seeds:
            curve = episode_curve(env, seed, sync)
            rows += [(seed, *point) for point in curve]
            last_it, last_acc, last_s = curve[-1]
            reached = last_acc >= s.tau
            print(
                f"(b) keep-all ResNet-32 episode ({args.episode_setting}), seed {seed}, {s.fold} "
                f"fold, M={s.batch_size}, "
                f"tau={s.tau}, T'={s.max_iters}: "
                + (f"i_tau={last_it}" if reached else f"tau not reached in {last_it}")
                + f" in {last_s:.1f}s ({last_s / max(last_it, 1) * 1e3:.2f} ms/iteration, dev "
                f"evaluations every {s.eval_every} included); best dev "
                f"{max(a for _, a, _ in curve):.3f}"
            )
        with (out / "gpu_cifar_curve.csv").open("w", newline="") as f:
            csv.writer(f).writerows([("seed", "iteration", "dev_accuracy", "seconds"), *rows])

    # (c) Overhead against a bare loop.
    if "c" in args.sections:
        rows = []
        for name, kwargs in (("cifar10", sized), ("digits", {})):
            iters = sizes[name]
            env = L2TEnv(name, device=dev, tau=1.0, max_iters=10**9, **kwargs)
            env.reset(seed=0)
            env_t, bare_t = interleaved(env, BareLoop(env.settings, 0), iters, args.blocks, sync)
            e, b = float(np.median(env_t)), float(np.median(bare_t))
            rows.append((name, env.student, env.batch_size, e, b, e / b))
            print(
                f"(c) {name} {env.student} M={env.batch_size}: env {e * 1e3:.3f} ms/it, "
                f"bare {b * 1e3:.3f} ms/it, ratio {e / b:.3f}x "
                f"(medians of {args.blocks} blocks of {iters})"
            )
        with (out / "gpu_overhead.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                ["task", "student", "M", "env_s_per_iter", "bare_s_per_iter", "ratio", "gpu"]
            )
            w.writerows([(*r, gpu) for r in rows])

    # (d) Many students at once: the native vector env against one env, keep-all.
    if "d" in args.sections:
        scaling = []
        for name, kwargs in (("cifar10", sized), ("digits", {})):
            steps = sizes[name]
            one = L2TEnv(name, device=dev, tau=1.0, max_iters=10**9, **kwargs)
            one.reset(seed=0)
            base = steps_per_second(one, steps, sync)
            for n in args.vector_sizes:
                venv = L2TVectorEnv(n, name, device=dev, tau=1.0, max_iters=10**9, **kwargs)
                venv.reset(seed=0)
                rate = n * steps_per_second(venv, max(10, steps // n), sync)
                scaling.append((name, n, rate, rate / base))
                print(
                    f"(d) {name} vector env N={n}: {rate:.1f} student steps/s, "
                    f"{rate / base:.2f}x one env ({base:.1f}/s)"
                )
                del venv
        with (out / "gpu_vector.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["task", "num_envs", "teacher_steps_per_s", "x_single", "gpu"])
            w.writerows([(*r, gpu) for r in scaling])

    # (f) Host synchronisations per step (CUDA only: on a CPU nothing synchronises).
    if "f" in args.sections and dev == "cuda":
        rng = np.random.default_rng(0)
        for label in ("fp32", "bf16+channels_last"):
            options = SETTINGS[label]
            env = L2TEnv(
                "cifar10", device=dev, tau=1.0, max_iters=10**9, eval_every=5, **sized, **options
            )
            env.reset(seed=0)
            m = env.batch_size
            for _ in range(5):  # first-use work (autotuner, pinned buffers) is not per-step cost
                env.step(np.ones(m, dtype=bool))
            # Keep-all steps (the candidate pass reused), then partial masks (pool, own forward).
            actions = [np.ones(m, dtype=bool)] * 12 + [rng.random(m) < 0.6 for _ in range(12)]
            counts, allowed = syncs_per_step(env, actions)
            verdict = "PASS" if counts == allowed else "FAIL"
            print(
                f"(f) {verdict} L2TEnv CIFAR {label}: syncs per step {counts} "
                f"(allowed {allowed}: the observation, plus a dev evaluation's accuracy)"
            )
        venv = L2TVectorEnv(
            4, "cifar10", device=dev, tau=1.0, max_iters=10**9, eval_every=5, **sized
        )
        venv.reset(seed=0)
        keep = np.ones((4, venv.batch_size), dtype=bool)
        for _ in range(5):
            venv.step(keep)
        actions = [keep] * 10 + [rng.random(keep.shape) < 0.6 for _ in range(10)]
        counts, allowed = syncs_per_step(venv, actions)
        verdict = "PASS" if counts == allowed else "FAIL"
        print(f"(f) {verdict} L2TVectorEnv CIFAR N=4: syncs per step {counts} (allowed {allowed})")

    # (e) The student-speed options, keep-all ResNet-32, same seeds; compiled settings last.
    if "e" in args.sections:
        iters = args.precision_iters
        settings = sorted(args.settings, key=lambda name: "compile" in name)
        if iters > 0:
            t = time.perf_counter()
            every = min(TASKS["cifar10"].eval_every, iters)

            def make(options: dict, warm_up: bool = False) -> L2TEnv:
                n = min(30, iters) if warm_up else iters
                return L2TEnv(
                    "cifar10",
                    device=dev,
                    tau=1.0,
                    max_iters=n,
                    eval_every=every if not warm_up else n,
                    **sized,
                    **options,
                )

            rows = []
            for name in settings:
                if "compile" in name and left() < 90:
                    print(f"(e) {name} skipped: {left():.0f}s of the budget left")
                    continue
                w = time.perf_counter()
                rows += compare_settings(
                    make, [name], args.precision_seeds, args.precision_tau, sync
                )
                print(f"    {name}: warm-up and episodes {time.perf_counter() - w:.0f}s")
            with (out / "gpu_precision.csv").open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(
                    ["setting", "seed", "final_dev_accuracy", "i_tau", "iterations", "seconds"]
                )
                w.writerows(rows)
            print(
                f"(e) keep-all ResNet-32, {iters} iterations, seeds {args.precision_seeds}, "
                f"i_tau for tau={args.precision_tau} [{time.perf_counter() - t:.0f}s]"
            )
            for name in dict.fromkeys(r[0] for r in rows):
                mine = [r for r in rows if r[0] == name]
                accs = [r[2] for r in mine]
                ms = statistics.median(r[5] / r[4] * 1e3 for r in mine)
                spread = f" +- {statistics.stdev(accs):.3f}" if len(accs) > 1 else ""
                print(
                    f"    {name:>18}: final dev {statistics.mean(accs):.3f}{spread} "
                    f"({', '.join(f'{a:.3f}' for a in accs)}); i_tau {[r[3] for r in mine]}; "
                    f"{ms:.2f} ms/iteration"
                )

    # (g) Other students' time per iteration (the transfer experiment's ResNet-110 among them).
    if "g" in args.sections:
        rows = []
        for student in args.students:
            for label in ("fp32", "bf16+channels_last"):
                env = L2TEnv(
                    "cifar10",
                    device=dev,
                    student=student,
                    tau=1.0,
                    max_iters=10**9,
                    eval_every=10**6,
                    **sized,
                    **SETTINGS[label],
                )
                env.reset(seed=0)
                rate = steps_per_second(env, sizes["cifar10"], sync)
                rows.append((student, label, env.batch_size, 1 / rate))
                print(
                    f"(g) {student} {label} M={env.batch_size}: {1e3 / rate:.2f} ms/iteration "
                    f"(keep-all, no dev evaluation, {sizes['cifar10']} iterations)"
                )
        with (out / "gpu_students.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["student", "setting", "M", "s_per_iter", "gpu"])
            w.writerows([(*r, gpu) for r in rows])

    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
