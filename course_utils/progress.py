"""One progress-bar policy for the whole package.

Every function that loops over batches, images, runs or draws takes ``progress: bool = True``
and wraps its loop in :func:`progress_bar`: a ``tqdm.auto`` bar (a widget in Jupyter, text in a
terminal) that appears only once the loop has run for :data:`DELAY_SECONDS`, so quick calls
(one projection, a slider move) stay silent and long ones (mining a dataset, training,
generating the data) always show how far they are. ``progress=False`` silences it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["DELAY_SECONDS", "progress_bar"]

#: A bar is shown only for loops that run longer than this.
DELAY_SECONDS = 1.0

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, *, progress: bool = True, **options: Any) -> tqdm:
    """``tqdm.auto.tqdm(iterable, **options)`` with the package's policy: disabled unless
    ``progress``, and shown after :data:`DELAY_SECONDS` (``desc``, ``total``, ``unit``... as in tqdm)."""
    return tqdm(iterable, disable=not progress, delay=DELAY_SECONDS, **options)
