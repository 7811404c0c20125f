"""One prepared GPU check: CUDA against CPU, a keep-all CIFAR-10 ResNet-32 run, overhead on GPU.

    python benchmarks/gpu_check.py --cifar-npz benchmarks/out/cifar10_test_jpg.npz --out DIR

(a) Digits and a small CIFAR-shaped ResNet-32 run, same seeds and actions on CPU and CUDA: the
    observations must agree to float tolerance (bit-identity is a CPU promise only).
(b) A keep-all ResNet-32 run with the CIFAR-10 task's defaults, recording dev accuracy against
    iterations and seconds. Real CIFAR-10 is used if ``--data-root`` holds it; else the 10,000
    CIFAR-10 test images given as ``--cifar-npz`` (uint8 x (N, 32, 32, 3), y) stand in for the
    training set, which is smaller than the real fold, so time per iteration carries over but
    the iterations to tau do not; else random data of the right shape.
(c) The env's overhead against a bare loop on the GPU (benchmarks/overhead.py), CIFAR-10 and
    Digits.
(d) The native vector env's teacher steps/s at N = 1, 4, 16 against one env (not yet run on a
    GPU: written after the session's device time was spent).
(e) The student-speed options: keep-all ResNet-32 episodes, same seeds, in fp32, bf16,
    channels-last and both (``--settings``; "compile" may be added), interleaved seed by seed:
    final dev accuracy, i_tau for ``--precision-tau`` and time per iteration, so that "accuracy
    unchanged within noise" and the speed-up can be read off one run.
(f) CUDA only: host synchronisations per teacher step, counted with
    ``torch.cuda.set_sync_debug_mode("warn")``: one (the observation copy) plus one per dev
    evaluation is all there may be, for the single env (fp32, and bf16 + channels-last, keep-all
    and partial masks) and the vector env.
cuDNN's autotuner is switched on for every side, as a GPU user would. The whole script takes about
five minutes on an H100 with the defaults; ``--precision-iters`` and ``--curve-iters`` set most of
it.
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
from l2t_gym.data.vision import CIFAR10_MEAN, CIFAR10_STD
from l2t_gym.speed import BareLoop, interleaved, steps_per_second
from l2t_gym.vector import L2TVectorEnv


def cifar_arrays(npz: str | None, n: int) -> tuple[RawData, str]:
    if npz:
        z = np.load(npz)
        x = z["x"].astype(np.float32) / 255.0
        x = (x - np.array(CIFAR10_MEAN, np.float32)) / np.array(CIFAR10_STD, np.float32)
        x, y = x.transpose(0, 3, 1, 2), z["y"]
        return RawData.from_arrays(x, y, x[:1000], y[:1000], 10), f"{len(y)} CIFAR-10 test JPEGs"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, n)
    return RawData.from_arrays(x, y, x[: n // 10], y[: n // 10], 10), "random data (no signal)"


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


def compare_devices(make, device, seeds, steps, keep_prob) -> float:
    worst = 0.0
    for seed in seeds:
        cpu = trajectory(make("cpu"), seed, steps, keep_prob)
        gpu = trajectory(make(device), seed, steps, keep_prob)
        n = min(len(cpu), len(gpu))
        worst = max(
            worst, max(float(np.abs(a - b).max()) for a, b in zip(cpu[:n], gpu[:n], strict=True))
        )
    return worst


def episode_curve(env: L2TEnv, seed: int, sync) -> list[tuple[int, float, float]]:
    """Keep-all to the end of the clock: (iteration, dev accuracy, seconds) at every eval."""
    obs, info = env.reset(seed=seed)
    keep = np.ones(env.batch_size, dtype=bool)
    sync()
    start, curve, done = time.perf_counter(), [(0, info["dev_accuracy"], 0.0)], False
    while not done:
        obs, _, terminated, truncated, info = env.step(keep)
        done = terminated or truncated
        if info["iteration"] % env.eval_every == 0 and info["iteration"] != curve[-1][0]:
            curve.append((info["iteration"], info["dev_accuracy"], time.perf_counter() - start))
    return curve


SETTINGS: dict[str, dict] = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "channels_last": {"channels_last": True},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
    "compile": {"compile": True},
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
    ap.add_argument("--cifar-npz", default=None)
    ap.add_argument("--data-root", default=None, help="a folder holding real CIFAR-10")
    ap.add_argument("--curve-iters", type=int, default=3000)
    ap.add_argument("--random-size", type=int, default=10_000, help="images if no real data")
    ap.add_argument("--cifar-batch", type=int, default=None, help="M for (b), (c): task's if unset")
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
    ap.add_argument(
        "--precision-iters",
        type=int,
        default=None,
        help="iterations per episode in (e) (0 skips it); default min(1000, --curve-iters)",
    )
    ap.add_argument("--precision-seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--precision-tau", type=float, default=0.4, help="(e) reports i_tau for it")
    ap.add_argument(
        "--settings",
        nargs="+",
        default=["fp32", "bf16", "channels_last", "bf16+channels_last"],
        choices=list(SETTINGS),
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = args.device
    started = time.perf_counter()
    if dev == "cuda" and not torch.cuda.is_available():
        sys.exit("this script checks the CUDA path, and torch sees no GPU here")
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    torch.backends.cudnn.benchmark = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu (smoke test)"
    print(f"GPU: {gpu}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}")

    real = args.data_root and (Path(args.data_root) / "cifar-10-batches-py").is_dir()
    data, what = (None, "real CIFAR-10") if real else cifar_arrays(args.cifar_npz, args.random_size)
    cifar = {"data_root": args.data_root, "download": False} if real else {"data": data}
    sized = {**cifar, "batch_size": args.cifar_batch}
    print(f"CIFAR-10 data: {what}")

    # (a) CUDA against CPU.
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
        f"(a) max |obs_cpu - obs_{dev}|: Digits {d_digits:.2e} (3 seeds x 30 steps, keep 70%); "
        f"CIFAR ResNet-32 {d_cifar:.2e} (3 keep-all steps, M=32, no augmentation) "
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

    # (b) Keep-all ResNet-32 with the task's defaults; tau unreachable so the whole curve shows.
    every = min(TASKS["cifar10"].eval_every, args.curve_iters)
    env = L2TEnv(
        "cifar10", device=dev, tau=1.0, max_iters=args.curve_iters, eval_every=every, **sized
    )
    n_warm = min(60, args.curve_iters)
    warm_up = L2TEnv("cifar10", device=dev, tau=1.0, max_iters=n_warm, eval_every=n_warm, **sized)
    episode_curve(warm_up, 1, sync)
    curve = episode_curve(env, 0, sync)
    with (out / "gpu_cifar_curve.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("iteration", "dev_accuracy", "seconds"), *curve])
    last_it, _, last_s = curve[-1]
    print(
        f"(b) keep-all ResNet-32, M={env.batch_size}: {last_it} iterations in {last_s:.1f}s "
        f"({last_s / last_it * 1e3:.2f} ms/iteration incl. dev evals every {env.eval_every}); "
        f"best dev {max(a for _, a, _ in curve):.3f}"
    )
    for tau in (0.4, 0.5, 0.6, 0.7, 0.8) if last_it >= 100 else ():
        hit = next(((i, s) for i, a, s in curve if a >= tau), None)
        print(
            f"    tau={tau:.2f}: " + (f"i_tau={hit[0]} at {hit[1]:.1f}s" if hit else "not reached")
        )

    # (c) Overhead against a bare loop, on the GPU.
    rows = []
    sizes = {"cifar10": 100, "digits": 200} if dev == "cuda" else {"cifar10": 2, "digits": 20}
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
        w.writerow(["task", "student", "M", "env_s_per_iter", "bare_s_per_iter", "ratio", "gpu"])
        w.writerows([(*r, gpu) for r in rows])

    # (d) Many students at once: the native vector env against one env, keep-all.
    scaling = []
    for name, kwargs in (("cifar10", sized), ("digits", {})):
        steps = sizes[name]
        one = L2TEnv(name, device=dev, tau=1.0, max_iters=10**9, **kwargs)
        one.reset(seed=0)
        base = steps_per_second(one, steps, sync)
        for n in args.vector_sizes:
            venv = L2TVectorEnv(n, name, device=dev, tau=1.0, max_iters=10**9, **kwargs)
            venv.reset(seed=0)
            rate = n * steps_per_second(venv, max(3, steps // n), sync)
            scaling.append((name, n, rate, rate / base))
            print(
                f"(d) {name} vector env N={n}: {rate:.1f} teacher steps/s, "
                f"{rate / base:.2f}x one env ({base:.1f}/s)"
            )
            del venv
    with (out / "gpu_vector.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "num_envs", "teacher_steps_per_s", "x_single", "gpu"])
        w.writerows([(*r, gpu) for r in scaling])

    # (e) The student-speed options, keep-all ResNet-32, same seeds.
    iters = min(1000, args.curve_iters) if args.precision_iters is None else args.precision_iters
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

        rows = compare_settings(make, args.settings, args.precision_seeds, args.precision_tau, sync)
        with (out / "gpu_precision.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["setting", "seed", "final_dev_accuracy", "i_tau", "iterations", "seconds"])
            w.writerows(rows)
        print(
            f"(e) keep-all ResNet-32, {iters} iterations, seeds {args.precision_seeds}, "
            f"i_tau for tau={args.precision_tau} [{time.perf_counter() - t:.0f}s]"
        )
        for name in args.settings:
            mine = [r for r in rows if r[0] == name]
            accs = [r[2] for r in mine]
            ms = statistics.median(r[5] / r[4] * 1e3 for r in mine)
            spread = f" +- {statistics.stdev(accs):.3f}" if len(accs) > 1 else ""
            print(
                f"    {name:>18}: final dev {statistics.mean(accs):.3f}{spread} "
                f"({', '.join(f'{a:.3f}' for a in accs)}); i_tau {[r[3] for r in mine]}; "
                f"{ms:.2f} ms/iteration"
            )

    # (f) Host synchronisations per step (CUDA only: on a CPU nothing synchronises).
    if dev == "cuda":
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
        venv = L2TVectorEnv(4, "digits", device=dev, tau=1.0, max_iters=10**9, eval_every=5)
        venv.reset(seed=0)
        keep = np.ones((4, venv.batch_size), dtype=bool)
        for _ in range(5):
            venv.step(keep)
        actions = [keep] * 10 + [rng.random(keep.shape) < 0.6 for _ in range(10)]
        counts, allowed = syncs_per_step(venv, actions)
        verdict = "PASS" if counts == allowed else "FAIL"
        print(f"(f) {verdict} L2TVectorEnv Digits N=4: syncs per step {counts} (allowed {allowed})")
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
