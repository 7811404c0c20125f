"""Fuzz the envs' inputs: random constructor arguments and random actions, good and bad.

    python benchmarks/fuzz_inputs.py --arguments 1500 --actions 3000 --seed 0

Every input is judged against the documented contract, written here independently of the
package (an *oracle*): an argument or action is valid or it is not. Each try is then one of

* accepted, valid: as it should be;
* refused clearly: a TypeError or ValueError whose message names the argument (or, for an action,
  says what a keep mask must be), raised when the env is built (arguments) or at the step;
* refused late: a clear error, but only at the first ``reset()`` (where the data is first
  loaded: a fold too small for the batch or the dev share);
* **accepted, invalid**, **refused, valid**, or **refused unclearly** (another exception, or a
  message that names nothing): the faults this script is for.

After every refused action the env must still take a valid step (counted as well). Arguments
go to ``L2TEnv``, ``L2TVectorEnv`` and through ``gym.make`` / ``gym.make_vec``; actions to
``L2TEnv`` and ``L2TVectorEnv(3)``. Prints a table and writes ``fuzz.csv`` with every fault.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import l2t_gym  # noqa: F401  (registers the envs)
from l2t_gym import L2TEnv
from l2t_gym.data import RawData
from l2t_gym.settings import ARGUMENTS
from l2t_gym.vector import L2TVectorEnv

M = 32  # Digits' batch size
INTS = ("max_iters", "batch_size", "eval_every", "max_teacher_steps")
FLAGS = ("augment", "download", "channels_last", "compile")


def candidate_values(rng: random.Random) -> list[Any]:
    """A pool of values of every kind an argument might be handed."""
    numbers = [0, 1, 2, -1, 32, 100, 10**9, 0.0, 0.5, 1.0, 1.5, -0.1, 2.5, 32.0, 1e-12, 1e6]
    specials = [math.nan, math.inf, -math.inf, True, False, None, np.int64(16), np.float32(0.25)]
    specials += [np.bool_(True), np.array(0.5), np.array([1, 2]), complex(1, 1), np.float64(0.9)]
    words = ["", "abc", "0.1", "16", "True", "False", "no", "yes", "paper", "mask", "teacher"]
    words += ["student", "sgd", "adam", "rmsprop", "fp32", "bf16", "fp16", "end", "eval", "cpu"]
    words += ["auto", "cuda", "cuda:0", "tpu", "mlp-16", "mlp-0", "resnet20", "lstm-8-8", "vgg"]
    words += ["/nonexistent", "."]
    others = [b"\x01", [0.1], (1,), {}, {"a": 1}, object(), torch.tensor(0.5), torch.device("cpu")]
    others += [Path("."), student_factory, optimizer_factory, lambda params: 3, print]
    pool = numbers + specials + words + others
    pool += [rng.uniform(-2, 2) for _ in range(6)] + [rng.randint(-5, 5000) for _ in range(6)]
    return pool


def student_factory() -> torch.nn.Module:
    """A user's own student for Digits' (1, 8, 8) images."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))


def optimizer_factory(params: Any) -> torch.optim.Optimizer:
    """A user's own optimiser."""
    return torch.optim.SGD(params, lr=0.05)


def _real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)
    )


def _int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def valid_argument(name: str, v: Any, vector: bool) -> bool:
    """The documented contract of each argument (README, L2TEnv's docstring), for Digits."""
    if v is None and name != "render_mode":
        return True  # None stands for the default of every argument
    if name == "tau":
        return _real(v) and 0 < float(v) <= 1
    if name == "batch_size":  # at most the 575 training instances of Digits' teacher fold
        return _int(v) and 1 <= v <= 575
    if name in INTS:
        return _int(v) and v >= 1
    if name in ("fold", "split"):
        return isinstance(v, str) and v in ("teacher", "student")
    if name == "mode":
        return isinstance(v, str) and v in (("paper",) if vector else ("paper", "mask"))
    if name == "student":  # a name that reads (1, 8, 8) images, or a factory of a module
        return v is student_factory or (isinstance(v, str) and v in ("mlp-16", "resnet20"))
    if name == "optimizer":  # the vector env steps its stacked students with SGD only
        if vector:
            return isinstance(v, str) and v == "sgd"
        return v is optimizer_factory or (isinstance(v, str) and v in ("sgd", "adam"))
    if name == "lr":
        return _real(v) and math.isfinite(v) and v > 0
    if name == "momentum":
        return _real(v) and 0 <= v < 1
    if name in ("weight_decay", "candidate_cost"):
        return _real(v) and math.isfinite(v) and v >= 0
    if name == "divergence_loss":
        return _real(v) and not math.isnan(v) and v > 0
    if name == "dev_fraction":
        return _real(v) and 0 < v < 1
    if name in FLAGS:
        if name == "compile" and vector:
            return isinstance(v, (bool, np.bool_)) and not v
        if name == "channels_last":  # Digits' inputs are (1, 8, 8) images; not in the vector env
            return isinstance(v, (bool, np.bool_)) and not (vector and v)
        return isinstance(v, (bool, np.bool_))
    if name == "device":
        return (isinstance(v, str) and v in ("auto", "cpu")) or (
            isinstance(v, torch.device) and v == torch.device("cpu")
        )
    if name == "data_root":
        return isinstance(v, (str, Path))
    if name == "data":
        return isinstance(v, RawData)
    if name == "report_test":
        ok = (False, True, "end") if vector else (False, True, "end", "eval")
        return isinstance(v, (bool, np.bool_, str)) and v in ok
    if name == "precision":
        return isinstance(v, str) and v in ("fp32", "bf16")
    if name == "extra_features":  # a tuple or list of known, distinct column names
        known = ("loss_rank", "margin_rank", "kept_fraction", "mean_dev_accuracy")
        known = (*known, "irreducible_loss", "loss_vs_mean", "loss_change")
        return (
            isinstance(v, (tuple, list))
            and all(isinstance(x, str) and x in known for x in v)
            and len(set(v)) == len(v)
        )
    if name == "render_mode":
        return v is None
    if name == "reward":
        return isinstance(v, str) and v in ("paper", "thresholds")
    if name in ("taus", "tau_weights"):  # alone, under the default reward="paper": refused
        return False
    raise KeyError(name)


def try_arguments(name: str, v: Any, vector: bool, via_gym: bool) -> str:
    """How one constructor call went: accepted, clear, late, or unclear (see the module doc)."""
    kwargs = {"device": "cpu", name: v} if name != "device" else {name: v}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if vector:
                env = (
                    gym.make_vec("L2T-Digits-v0", num_envs=2, **kwargs)
                    if via_gym
                    else L2TVectorEnv(2, "digits", **kwargs)
                )
            else:
                env = gym.make("L2T-Digits-v0", **kwargs) if via_gym else L2TEnv("digits", **kwargs)
    except (TypeError, ValueError) as err:
        return (
            "clear" if name in str(err) or (name == "split" and "fold" in str(err)) else "unclear"
        )
    except Exception:  # noqa: BLE001 - any other exception is unclear by definition
        return "unclear"
    if name == "compile" and v:  # compiling takes a minute on a CPU: trust construction
        return "accepted"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env.reset(seed=0)
            env.step(np.ones(env.action_space.shape, dtype=bool))
    except (TypeError, ValueError) as err:
        return "late" if name in str(err) else "unclear (late)"
    except Exception:  # noqa: BLE001
        return "unclear (late)"
    return "accepted"


def bad_actions(rng: np.random.Generator, shape: tuple[int, ...]) -> list[tuple[str, Any, bool]]:
    """(kind, action, valid) tries for an env whose actions have ``shape``."""
    n = int(np.prod(shape))
    kinds: list[tuple[str, Any, bool]] = []
    mask = rng.random(shape) < 0.5
    kinds.append(("bool", mask, True))
    kinds.append(("int 0/1", mask.astype(rng.choice([np.int8, np.int32, np.int64])), True))
    kinds.append(("float 0/1", mask.astype(np.float32), True))
    kinds.append(("list 0/1", mask.astype(int).tolist(), True))
    kinds.append(("torch 0/1", torch.tensor(mask, dtype=torch.float32, requires_grad=True), True))
    bad_value = rng.choice([2, -1, 0.5, np.nan, np.inf, 1e-9, 255])
    wrong = mask.astype(np.float64)
    wrong.flat[rng.integers(n)] = bad_value
    kinds.append(("a value not 0/1", wrong, False))
    other = list(shape)
    other[rng.integers(len(other))] += int(rng.choice([-1, 1, 5]))
    kinds.append(("another shape", np.ones(tuple(max(0, s) for s in other), dtype=bool), False))
    kinds.append(("an extra dimension", np.ones((1, *shape), dtype=bool), False))
    kinds.append(("a scalar", rng.choice([0, 1, True, 1.0]), False))
    kinds.append(("None", None, False))
    kinds.append(("a string", "1" * n, False))
    kinds.append(("bytes", b"\x01" * n, False))
    kinds.append(("a bytearray", bytearray(b"\x01" * n), False))
    kinds.append(("a memoryview", memoryview(b"\x01" * n), False))
    kinds.append(("a masked array", np.ma.masked_all(shape), False))
    kinds.append(("complex", mask.astype(complex), False))
    kinds.append(("objects", np.full(shape, object()), False))
    kinds.append(("a dict", {"keep": mask}, False))
    kinds.append(("a set", {1, 0}, False))
    ragged = mask.astype(int).tolist()
    if len(shape) == 1:
        ragged = [ragged[:-1], ragged]
    else:
        ragged[-1] = ragged[-1][:-1]
    kinds.append(("a ragged list", ragged, False))
    return kinds


def _ended(step: tuple) -> bool:
    return bool(np.any(step[2]) or np.any(step[3]))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--arguments", type=int, default=1500, help="constructor calls")
    ap.add_argument("--actions", type=int, default=3000, help="actions tried")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/out/fuzz")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng, nprng = random.Random(args.seed), np.random.default_rng(args.seed)
    pool = candidate_values(rng)
    names = [*ARGUMENTS, "split", "render_mode"]
    tally: Counter[tuple[str, str]] = Counter()
    faults = []

    for _ in range(args.arguments):
        name, value = rng.choice(names), rng.choice(pool)
        vector, via_gym = rng.random() < 0.5, rng.random() < 0.5
        if name == "render_mode" and (vector or via_gym):
            continue  # the vector env takes none; gym.make reads render_mode itself first
        valid = valid_argument(name, value, vector)
        outcome = try_arguments(name, value, vector, via_gym)
        verdict = {
            ("accepted", True): "accepted, valid",
            ("accepted", False): "ACCEPTED, INVALID",
            ("clear", False): "refused clearly",
            ("clear", True): "REFUSED, VALID",
            ("late", False): "refused late (clear)",
            ("late", True): "refused late (clear)",  # a fold too small: only the data can tell
        }.get((outcome, valid), "REFUSED UNCLEARLY")
        tally[("arguments", verdict)] += 1
        if verdict.isupper():
            faults.append(("argument", name, repr(value)[:60], vector, outcome))

    envs = {
        "L2TEnv": L2TEnv("digits", device="cpu"),
        "L2TVectorEnv(3)": L2TVectorEnv(3, "digits", device="cpu"),
    }
    for env in envs.values():
        env.reset(seed=0)
    tries = 0
    while tries < args.actions:
        for label, env in envs.items():
            shape = env.action_space.shape
            for kind, action, valid in bad_actions(nprng, shape):
                tries += 1
                try:
                    ended = _ended(env.step(action))
                    outcome = "accepted"
                except (TypeError, ValueError) as err:
                    ended, outcome = False, "clear" if "keep mask" in str(err) else "unclear"
                except Exception:  # noqa: BLE001
                    ended, outcome = False, "unclear"
                verdict = {
                    ("accepted", True): "accepted, valid",
                    ("accepted", False): "ACCEPTED, INVALID",
                    ("clear", False): "refused clearly",
                    ("clear", True): "REFUSED, VALID",
                }.get((outcome, valid), "REFUSED UNCLEARLY")
                tally[("actions", verdict)] += 1
                if verdict.isupper():
                    faults.append(("action", label, kind, True, outcome))
                if ended and label == "L2TEnv":  # the vector env resets itself
                    env.reset()
                try:  # still usable: a valid step goes through
                    if _ended(env.step(np.ones(shape, dtype=bool))) and label == "L2TEnv":
                        env.reset()
                    tally[("actions", "usable after it")] += 1
                except Exception as err:  # noqa: BLE001
                    faults.append(("action", label, kind, "unusable after", repr(err)[:80]))

    print(f"seed {args.seed}; torch {torch.__version__}, 1 thread")
    print(f"{'inputs':10} {'outcome':28} {'count':>7}")
    for (what, verdict), count in sorted(tally.items()):
        print(f"{what:10} {verdict:28} {count:>7}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "fuzz.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("what", "where", "input", "vector", "outcome"), *faults])
    print(f"{len(faults)} faults; wrote {out / 'fuzz.csv'}")


if __name__ == "__main__":
    main()
