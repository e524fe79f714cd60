"""One convention for torch's CPU threads, shared by the notebooks and every command-line tool.

Unless told otherwise, torch runs one thread per core; processes that share the machine
(``torchrun``'s workers) divide the cores among them. ``--threads N`` (or ``threads=N``) sets
it; a number below 1 is refused.
"""

from __future__ import annotations

import argparse
import os

import torch

__all__ = ["add_threads_option", "set_torch_threads"]


def set_torch_threads(threads: int | None = None, *, processes: int = 1) -> int:
    """Give torch ``threads`` CPU threads, or by default the cores divided among ``processes``
    (at least one); returns the number set. ``ValueError`` if ``threads`` is below 1."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1 (or None for one per core), got {threads}")
    count = threads or max(1, (os.cpu_count() or 1) // max(1, processes))
    torch.set_num_threads(count)
    return count


def _thread_count(text: str) -> int:
    """``argparse`` type of ``--threads``: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_threads_option(parser: argparse.ArgumentParser, *, per_process: bool = False) -> None:
    """Add ``--threads`` (default ``None``: one per core) to ``parser``; 0 or less exits with status 2."""
    scope = " per process" if per_process else ""
    parser.add_argument(
        "--threads",
        type=_thread_count,
        default=None,
        help=f"torch CPU threads{scope} (default: one per core)",
    )
