"""Command line of the homework: generate, references, grade, handout.

    python -m course_utils.homework generate --out homework/ [ASSIGNMENT ...]
    python -m course_utils.homework references [--out data/homework] [ASSIGNMENT ...]
    python -m course_utils.homework grade ASSIGNMENT [--module FILE | --solution] [--references NPZ]
    python -m course_utils.homework handout ASSIGNMENT [ASSIGNMENT ...] --out build/handouts/
    python -m course_utils.homework gradescope ASSIGNMENT [ASSIGNMENT ...] --out build/gradescope/

``grade`` exits with 0 only when every check ran and passed, 1 otherwise; every command exits
with 2 and a message when it cannot run (no module, missing or corrupt reference data, unknown
assignment). The submission runs in its own process with a time limit per check and in total.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .generate import ASSIGNMENTS, solution_path, write_student_versions
from .grader import CHECK_SECONDS, REFERENCE_DIR, TOTAL_SECONDS, grade
from .gradescope import make_gradescope_zip
from .handout import make_handout, write_solution_references

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.homework",
        description="Homework: student versions, reference data, grading, handouts.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="write the student versions (stubs, notebook, README, tests)")
    generate.add_argument("--out", default="homework", help="output folder (default: homework)")
    generate.add_argument(
        "assignments", nargs="*", metavar="ASSIGNMENT", help=f"default: all of {', '.join(ASSIGNMENTS)}"
    )

    references = commands.add_parser("references", help="run the solutions on their checks, write the reference data")
    references.add_argument("--out", default=str(REFERENCE_DIR), help="output folder (default: data/homework)")
    references.add_argument("assignments", nargs="*", metavar="ASSIGNMENT", help="default: all")

    grader = commands.add_parser("grade", help="grade a student's functions; prints the score per exercise")
    grader.add_argument("assignment", help="e.g. hw1_deconv")
    which = grader.add_mutually_exclusive_group()
    which.add_argument("--module", help="the student's file (default: <assignment>.py in the current folder)")
    which.add_argument("--solution", action="store_true", help="grade the solution source (instructors)")
    grader.add_argument(
        "--references",
        help="reference data (default: the course's data/homework/<assignment>.npz, hidden checks included; "
        "never a file beside the submission). In a handout folder: --references <assignment>_references.npz",
    )
    grader.add_argument(
        "--check-seconds",
        type=float,
        default=CHECK_SECONDS,
        help=f"time limit per check (default: {CHECK_SECONDS:.0f})",
    )
    grader.add_argument(
        "--total-seconds",
        type=float,
        default=TOTAL_SECONDS,
        help=f"time limit for the whole submission (default: {TOTAL_SECONDS:.0f})",
    )
    grader.add_argument(
        "--exercise",
        action="append",
        dest="exercises",
        metavar="FUNCTION",
        help="grade only this function (repeatable)",
    )

    handout = commands.add_parser("handout", help="zip the student version and the public reference data")
    handout.add_argument("assignments", nargs="+", metavar="ASSIGNMENT")
    handout.add_argument("--out", default="build/handouts", help="output folder (default: build/handouts)")
    gradescope = commands.add_parser("gradescope", help="zip a Gradescope autograder (writes results.json)")
    gradescope.add_argument("assignments", nargs="+", metavar="ASSIGNMENT")
    gradescope.add_argument("--out", default="build/gradescope", help="output folder (default: build/gradescope)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = [name for name in getattr(args, "assignments", []) if name not in ASSIGNMENTS]
    if unknown:
        parser.error(f"unknown assignments {unknown}; choose from {', '.join(ASSIGNMENTS)}")
    try:
        return _run(args)
    except (FileNotFoundError, ValueError) as error:  # no module, missing or corrupt reference data...
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "grade":
        module = solution_path(args.assignment) if args.solution else args.module
        report = grade(
            args.assignment,
            module,
            args.references,
            args.exercises,
            check_seconds=args.check_seconds,
            total_seconds=args.total_seconds,
        )
        return 0 if report.results and all(result.passed for result in report.results) else 1
    if args.command == "generate":
        for path in write_student_versions(args.out, args.assignments or ASSIGNMENTS):
            print(f"wrote {path}")
    elif args.command == "references":
        for path in write_solution_references(args.out, args.assignments or ASSIGNMENTS):
            print(f"wrote {path} (+ {path.with_suffix('.json').name})")
    elif args.command == "gradescope":
        for assignment in args.assignments:
            print(f"wrote {make_gradescope_zip(assignment, args.out)} (upload it as the autograder)")
    else:
        for assignment in args.assignments:
            print(f"wrote {make_handout(assignment, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
