"""The student: N training runs side by side (one for L2TEnv), and the two ways of holding the
students' tensors (as modules, or stacked for ``torch.func``)."""

from l2t_gym.student.base import BatchNormStats, Students, autocast, to_device_async
from l2t_gym.student.modules import ModuleStudents, StudentCompiler
from l2t_gym.student.run import Candidate, StudentRun
from l2t_gym.student.stacked import StackedStudents

__all__ = [
    "BatchNormStats",
    "Candidate",
    "ModuleStudents",
    "StackedStudents",
    "StudentCompiler",
    "StudentRun",
    "Students",
    "autocast",
    "to_device_async",
]
