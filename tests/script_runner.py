"""Run a script or ``python -m`` module of this checkout in a subprocess, as a user would.

``PYTHONPATH`` starts with this checkout, so the subprocess imports the code under test even where
another checkout of l2t_gym is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(
    *args: str, expect: int = 0, pythonpath: tuple[str | Path, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` from the repository root and check its exit status.

    :param args: a script path relative to the root (or ``-m module``) and its arguments.
    :param expect: the exit status it must end with.
    :param pythonpath: folders to put before the checkout on ``PYTHONPATH``.
    :return: the finished process, stdout and stderr as text.
    """
    paths = [*map(str, pythonpath), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == expect, (proc.returncode, proc.stderr[-3000:])
    return proc
