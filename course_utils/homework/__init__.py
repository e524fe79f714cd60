"""Homework: solution sources, generated student versions, reference data and the autograder.

Instructors write each assignment once, in ``course_utils/homework/solutions/<name>.py`` (see
:mod:`course_utils.homework.generate` for the solution markers), then::

    python -m course_utils.homework references            # data/homework/<name>.npz from the solutions
    python -m course_utils.homework generate --out homework/    # the student versions (committed)
    python -m course_utils.homework handout hw1_deconv --out build/handouts/   # hw1_deconv.zip
    python -m course_utils.homework grade hw1_deconv --module path/to/hw1_deconv.py

Students unpack a handout and run ``python -m course_utils.homework grade <name> --references
<name>_references.npz`` in its folder (see :mod:`course_utils.homework.grader`). Grading reads
only the reference data (never the solutions) and runs the submission in its own process
(:mod:`course_utils.homework.sandbox`).
"""

from .grader import (
    REFERENCE_DIR,
    TOLERANCE,
    Check,
    CheckResult,
    GradeReport,
    References,
    StoredCheck,
    build_references,
    check_seed,
    default_references,
    grade,
    handout_references,
    judge,
    load_module,
    load_references,
    random_zfnet,
    rel_error,
    run_check,
    write_references,
)

__all__ = [
    "REFERENCE_DIR",
    "TOLERANCE",
    "Check",
    "CheckResult",
    "GradeReport",
    "References",
    "StoredCheck",
    "build_references",
    "check_seed",
    "default_references",
    "grade",
    "handout_references",
    "judge",
    "load_module",
    "load_references",
    "random_zfnet",
    "rel_error",
    "run_check",
    "write_references",
]
