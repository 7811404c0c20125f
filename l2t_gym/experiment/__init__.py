"""Experiments as a library: one configuration and the recipes every front end shares.

The ``l2t`` command and the scripts in ``benchmarks/`` are thin layers over this package::

    from l2t_gym.experiment import ExperimentConfig, best_lossrank_ratio, compare_teachers
    from l2t_gym.experiment import train_teacher, write_report

    cfg = ExperimentConfig(task="digits", episodes=400, students=20, out="runs/cmp")
    trained = train_teacher(cfg)                       # REINFORCE on the teacher fold
    best, _ = best_lossrank_ratio(cfg)                 # LossRank's best ratio, teacher fold
    results = compare_teachers(cfg, {"l2t": trained.teacher}, best)   # fresh students
    print(write_report(cfg, results, ["l2t"], "Digits"))

:mod:`~l2t_gym.experiment.config` holds :class:`ExperimentConfig` (a dataclass with a docstring
under every field) and the command-line helpers; :mod:`~l2t_gym.experiment.recipes` the recipes.
"""

from l2t_gym.experiment.config import (
    OFFLINE_DATA,
    ExperimentConfig,
    add_arguments,
    config_from_arguments,
    field_docs,
    parse_key_value,
    parse_key_values,
    resolve_task,
)
from l2t_gym.experiment.recipes import (
    TrainedTeacher,
    best_lossrank_ratio,
    checkpoint_folder,
    compare_teachers,
    env_factory,
    env_kwargs,
    feature_names,
    heuristics_at,
    initial_teacher,
    load_extra,
    make_env,
    make_vector_env,
    train_teacher,
    training_printer,
    write_report,
)

__all__ = [
    "OFFLINE_DATA",
    "ExperimentConfig",
    "TrainedTeacher",
    "add_arguments",
    "best_lossrank_ratio",
    "checkpoint_folder",
    "compare_teachers",
    "config_from_arguments",
    "env_factory",
    "env_kwargs",
    "feature_names",
    "field_docs",
    "heuristics_at",
    "initial_teacher",
    "load_extra",
    "make_env",
    "make_vector_env",
    "parse_key_value",
    "parse_key_values",
    "resolve_task",
    "train_teacher",
    "training_printer",
    "write_report",
]
