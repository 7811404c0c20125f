"""Experiments as a library: one configuration and the recipes every front end shares.

The ``l2t`` command and the scripts in ``benchmarks/`` are thin layers over this package::

    from l2t_gym.experiment import ExperimentConfig, available_baselines, best_setting
    from l2t_gym.experiment import compare_teachers, train_teacher, write_report

    cfg = ExperimentConfig(task="digits", episodes=400, students=20, out="runs/cmp")
    trained = train_teacher(cfg)                       # REINFORCE on the teacher fold
    names = ["lossrank", *available_baselines(cfg)]    # RHO-LOSS only where the env has its column
    best = {n: best_setting(cfg, n)[0] for n in names} # each one's best setting, teacher fold
    results = compare_teachers(cfg, {"L2T": trained.teacher}, best=best)   # fresh students
    print(write_report(cfg, results, ["L2T"], "Digits"))

:mod:`~l2t_gym.experiment.config` holds :class:`ExperimentConfig` (a dataclass with a docstring
under every field) and the command-line helpers; :mod:`~l2t_gym.experiment.recipes` the recipes.
"""

from l2t_gym.experiment.config import (
    OFFLINE_DATA,
    SELECTION_BASELINES,
    ExperimentConfig,
    add_arguments,
    add_teacher_arguments,
    config_from_arguments,
    field_docs,
    parse_key_value,
    parse_key_values,
    resolve_task,
)
from l2t_gym.experiment.protocol import (
    ComparisonRun,
    ProtocolRow,
    heuristic_role,
    markdown_protocol,
    protocol_rows,
    replicate,
    run_comparison,
    write_protocol,
)
from l2t_gym.experiment.recipes import (
    BASELINES,
    TRAIN,
    Baseline,
    EnvSpec,
    TrainedTeacher,
    available_baselines,
    best_lossrank_ratio,
    best_setting,
    best_settings,
    checkpoint_folder,
    compare_teachers,
    describe_selection,
    env_factory,
    env_kwargs,
    episodes_done,
    feature_names,
    feature_overrides,
    heuristics_at,
    initial_teacher,
    load_extra,
    make_env,
    make_executor,
    make_vector_env,
    teacher_file,
    train_teacher,
    training_env,
    training_printer,
    write_report,
)

__all__ = [
    "write_protocol",
    "run_comparison",
    "replicate",
    "protocol_rows",
    "markdown_protocol",
    "heuristic_role",
    "ProtocolRow",
    "ComparisonRun",
    "BASELINES",
    "TRAIN",
    "EnvSpec",
    "make_executor",
    "training_env",
    "OFFLINE_DATA",
    "SELECTION_BASELINES",
    "Baseline",
    "ExperimentConfig",
    "TrainedTeacher",
    "add_arguments",
    "add_teacher_arguments",
    "available_baselines",
    "best_lossrank_ratio",
    "best_setting",
    "best_settings",
    "checkpoint_folder",
    "compare_teachers",
    "config_from_arguments",
    "env_factory",
    "env_kwargs",
    "describe_selection",
    "episodes_done",
    "feature_names",
    "feature_overrides",
    "field_docs",
    "heuristics_at",
    "initial_teacher",
    "load_extra",
    "make_env",
    "make_vector_env",
    "parse_key_value",
    "parse_key_values",
    "resolve_task",
    "teacher_file",
    "train_teacher",
    "training_printer",
    "write_report",
]
