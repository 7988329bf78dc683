"""User-facing errors: every bad input ends as one clear line, never a traceback.

CLIs wrap their ``main`` with :func:`cli_entry`, which prints ``error: <message>`` on one line
and exits with status 2 for any :class:`PVDRError` (and for ``FileNotFoundError``).
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class PVDRError(Exception):
    """Base class of the errors a user can fix (bad path, bad shape, mismatched checkpoint...)."""


class ConfigError(PVDRError, ValueError):
    """A configuration value is invalid (unknown task, bad image size, unknown yaml key...)."""


class DataError(PVDRError, ValueError):
    """An input file is missing, unreadable, corrupt, too short or of the wrong shape."""


class CheckpointError(PVDRError, ValueError):
    """A checkpoint is missing, corrupt, of another kind, or does not match the model."""


class DependencyError(PVDRError, ImportError):
    """An optional dependency (e.g. RLBench) is not installed."""


def one_line(message: str) -> str:
    """Collapse a message to one line."""
    return " ".join(str(message).split())


def cli_entry(main: F) -> F:
    """Decorate a CLI ``main``: user errors print ``error: ...`` on one line and exit with status 2; a closed stdout
    (``| head``) ends it with status 1 and no traceback."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except (PVDRError, FileNotFoundError) as exc:
            print(f"error: {one_line(str(exc))}", file=sys.stderr)
            sys.exit(2)
        except BrokenPipeError:  # stdout closed early (`... | head`): stop quietly, as a Unix tool does
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not raise again
            sys.exit(1)

    return wrapper  # type: ignore[return-value]
