"""The one confinement module: everything that runs tenant code or parses tenant bytes
calls :func:`run_python` (jobs, the import gate's unpacking, parsing and smoke test, the
export gate's readers and behavioural tests). See ``_run.py`` for the layers.
"""

from facelab.confine._landlock import landlock_abi
from facelab.confine._run import ConfinedRun, Limits, bound_paths, missing_layers, run_python, usage
from facelab.confine.safefs import UnsafeEntry, walk_regular

__all__ = [
    "ConfinedRun",
    "Limits",
    "UnsafeEntry",
    "bound_paths",
    "landlock_abi",
    "missing_layers",
    "run_python",
    "usage",
    "walk_regular",
]
