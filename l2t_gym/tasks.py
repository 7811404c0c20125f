"""The tasks: a dataset, a student and the episode's defaults, one entry each in :data:`TASKS`.

A task's registered id (``env_id``), its dataset (a key of :data:`l2t_gym.data.DATASETS`) and
every default live in its entry; ``import l2t_gym`` registers one id per entry. The defaults are
keywords of :class:`l2t_gym.L2TEnv`, used when the keyword is not given. Adding a task is one
entry here (plus a loader in ``l2t_gym.data`` if its dataset is new).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """Defaults of one task. ``why`` says where the numbers come from (shown in the README)."""

    #: The id ``import l2t_gym`` registers with Gymnasium, e.g. ``"L2T-Digits-v0"``.
    env_id: str
    #: The dataset's name in :data:`l2t_gym.data.DATASETS`.
    dataset: str
    input_shape: tuple[int, ...]
    num_classes: int
    student: str
    tau: float
    #: ``reward="thresholds"``'s defaults: increasing dev accuracies, the highest the task's
    #: ``tau`` (so episodes end where the paper's reward ends them), and their weights. The
    #: weights are the first author's (1/6, 1/3, 1/2: fyabc/RL4Data, for MNIST 0.95/0.97/0.98,
    #: CIFAR-10 0.80/0.84/0.865, IMDB 0.77/0.81/0.83); the thresholds are ours, spread below
    #: each task's tau on its keep-all curve (``why`` says where they come from).
    thresholds: tuple[float, ...]
    threshold_weights: tuple[float, ...]
    max_iters: int
    batch_size: int
    eval_every: int
    dev_fraction: float
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    augment: bool
    why: str
    #: Names of the task's per-instance data features (observation columns after the labels).
    extra_names: tuple[str, ...] = ()
    #: Whether the student runs stacked under ``torch.func`` in the native vector env
    #: (``gym.make_vec``); otherwise ``gym.make_vec`` falls back to Gymnasium's SyncVectorEnv
    #: (``nn.LSTM`` has no vmap rule).
    stacked: bool = True


TASKS: dict[str, TaskSpec] = {
    "digits": TaskSpec(
        env_id="L2T-Digits-v0",
        dataset="digits",
        input_shape=(1, 8, 8),
        num_classes=10,
        student="mlp-64",
        tau=0.93,
        thresholds=(0.85, 0.90, 0.93),
        threshold_weights=(1 / 6, 1 / 3, 1 / 2),
        max_iters=100,
        batch_size=32,
        eval_every=1,
        dev_fraction=0.2,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=0.0,
        augment=False,
        why=(
            "Embedded default: runs in well under a second per episode on one CPU core. "
            "tau=0.93 lies below the accuracy plateau (0.95 sits on it, so its i_tau is mostly "
            "dev-set noise); with T'=100 keep-all's median i_tau is 35% (teacher fold) and 45% "
            "(student fold) of T'. Dev accuracy is cheap "
            "(~144 instances), so it is read every iteration."
            " Thresholds 0.85/0.90/0.93: keep-all first reached them at median iterations "
            "22/31/42 (teacher fold) and 20/29/51 (student fold), ten seeds each; in 18 of the "
            "20 runs at three different iterations."
        ),
    ),
    "mnist": TaskSpec(
        env_id="L2T-MNIST-v0",
        dataset="mnist",
        input_shape=(1, 28, 28),
        num_classes=10,
        student="mlp-500",
        tau=0.93,
        thresholds=(0.89, 0.91, 0.93),
        threshold_weights=(1 / 6, 1 / 3, 1 / 2),
        max_iters=750,
        batch_size=20,
        eval_every=20,
        dev_fraction=1 / 15,
        optimizer="sgd",
        lr=0.02,
        momentum=0.9,
        weight_decay=0.0,
        augment=False,
        why=(
            "The paper's MLP 784-500-10; tau=0.93 and M=20 as in the paper's "
            "re-implementations. SGD 0.02 with momentum 0.9: on a 9,000-image stand-in (the real "
            "MNIST test images) keep-all's median i_tau was 270 iterations at 0.01 and 0.02, and "
            "most runs never reached tau at 0.05; T'=750 puts 270 at 36%. Dev sets of 2,000 per "
            "fold, read every 20 iterations."
            " Thresholds 0.89/0.91/0.93 (not yet measured): the authors' 0.95/0.97/0.98 would "
            "run past this task's tau, so ours end at it and lie 2-4 points below."
        ),
    ),
    "cifar10": TaskSpec(
        env_id="L2T-CIFAR10-v0",
        dataset="cifar10",
        input_shape=(3, 32, 32),
        num_classes=10,
        student="resnet32",
        tau=0.70,
        thresholds=(0.60, 0.65, 0.70),
        threshold_weights=(1 / 6, 1 / 3, 1 / 2),
        max_iters=5000,
        batch_size=128,
        eval_every=50,
        dev_fraction=0.1,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        augment=True,
        why=(
            "ResNet-32 as in the paper, with He et al.'s optimiser (SGD 0.1, momentum 0.9, "
            "weight decay 1e-4, constant rate), random crop + flip, M=128 as in the paper's "
            "re-implementations. tau=0.70 and T'=5,000 from keep-all runs on the real training "
            "images (50,000 JPEGs, offline mirror): a fold's 22,500 images plateau at 0.75-0.79 "
            "dev accuracy, and the re-implementations' tau=0.80 was never reached in 7,400-7,500 "
            "iterations (CPU, seed 0, both folds) and once in four 5,000-iteration GPU runs. "
            "0.70 lies on the rising part of the curve: keep-all's i_tau was 1,450-2,000 "
            "(median 1,900) on the teacher fold in six runs and 1,600-2,100 on the student fold "
            "in three, 29-42% of T'. "
            "A learning-rate decay would lift the plateau but pin i_tau to the decay step, so "
            "the rate stays constant. Dev sets of 2,500 per fold, read every 50 iterations."
            " Thresholds 0.60/0.65/0.70 (not yet measured per threshold): the authors' "
            "0.80/0.84/0.865 are out of reach here (see above), so ours lie below tau on the "
            "rising part of the curve."
        ),
    ),
    "imdb": TaskSpec(
        env_id="L2T-IMDB-v0",
        dataset="imdb",
        input_shape=(256,),
        num_classes=2,
        student="lstm-64-64",
        tau=0.85,
        thresholds=(0.77, 0.81, 0.85),
        threshold_weights=(1 / 6, 1 / 3, 1 / 2),
        max_iters=2000,
        batch_size=32,
        eval_every=50,
        dev_fraction=0.1,
        optimizer="adam",
        lr=1e-2,
        momentum=0.0,
        weight_decay=0.0,
        augment=False,
        why=(
            "Reviews as 256 token ids (the last 256 tokens; 10,000 ids, vocabulary from the "
            "training reviews), an embedding-64 + LSTM-64 student mean-pooled over the real "
            "tokens: a training step costs ~25-40 ms on one CPU core (hidden 128: ~2.5x). "
            "Adam 1e-2: on a 5,000-review real subset keep-all's best dev accuracy after 200 "
            "iterations was 0.80-0.84 at 1e-2 (six seeds), 0.77-0.83 at 5e-3 (three), "
            "0.76-0.79 at 3e-3 (four) and 0.71 at 1e-3 (one); none diverged in runs of up to "
            "800 iterations. tau=0.85 and T'=2,000 (5.7 passes over a fold's 11,250 training "
            "reviews) are estimates for the full training set, not yet run on it. Dev sets of "
            "1,250 per fold, read every 50 iterations (a read costs about 10 training steps on "
            "a CPU core)."
            " Thresholds 0.77/0.81/0.85: the authors' two lower ones with our tau on top "
            "(not yet measured)."
        ),
        extra_names=("review_length",),
        stacked=False,
    ),
}
