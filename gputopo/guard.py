"""How every `gputopo audit …` command ends: a documented exit code and at most one line on stderr.

Shared by ``audit``, ``audit pod`` and ``audit nccl`` so the three agree on what the codes they
have in common mean: 0 done (also when stdout's reader leaves early, as ``| head`` does), 1 an
internal error (a bug, ``RecursionError``, ``MemoryError``: one line, never a traceback), 130
interrupted. Each command documents its other codes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from rich.console import Console

__all__ = ["EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "PipeSafeConsole", "guarded", "silence_stdout"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


class PipeSafeConsole(Console):
    """rich exits with status 1 when stdout's reader goes away; here that is not an error (exit 0)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def guarded(prog: str, run: Callable[[], int]) -> int:
    """``run()``'s exit code; interrupts, a closed stdout and unexpected errors mapped as documented."""
    try:
        return run()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `gputopo audit x | head`: the reader left; say nothing more
        silence_stdout()
        return EXIT_OK
    except Exception as err:  # RecursionError, MemoryError, a bug: one line, never a traceback
        detail = " ".join(str(err).split())[:200]
        print(f"{prog}: internal error: {type(err).__name__}: {detail} (please report it with the input)",
              file=sys.stderr)
        return EXIT_INTERNAL


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
