"""How the recipes and ``hf-distill`` report a user's mistake: one line naming the problem and its fix, not a
traceback, as the ``accelerate`` and ``datasets`` command lines do. The traceback stays one setting away:
``HF_DISTILL_TRACEBACK=1`` or ``--log_level debug``.

Kept free of heavy imports: ``hf-distill --help`` goes through here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TRACEBACK_VARIABLE = "HF_DISTILL_TRACEBACK"
# What a wrong flag, path, file or missing extra raises; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, ImportError)


def wants_traceback(argv: Sequence[str]) -> bool:
    """Whether ``HF_DISTILL_TRACEBACK`` is set (not ``0``/``false``) or ``argv`` asks for ``--log_level debug``."""
    if os.environ.get(TRACEBACK_VARIABLE, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    argv = list(argv)
    return any(a == "--log_level=debug" or argv[i : i + 2] == ["--log_level", "debug"] for i, a in enumerate(argv))


def run_reporting_errors(main: Callable[[], Any], argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run ``main()`` and return an exit status: its own (an int) or 0, or 1 after printing a user error (see
    ``USER_ERRORS``) as ``prog: error: message`` on stderr. ``argv`` (default ``sys.argv[1:]``) is checked for
    ``--log_level debug``, which, like ``HF_DISTILL_TRACEBACK=1``, lets the error and its traceback through."""
    argv = sys.argv[1:] if argv is None else argv
    if wants_traceback(argv):
        result = main()
        return result if isinstance(result, int) else 0
    try:
        result = main()
    except USER_ERRORS as error:
        prog = prog or Path(sys.argv[0]).name
        print(f"{prog}: error: {error}", file=sys.stderr)
        print(f"({TRACEBACK_VARIABLE}=1 or --log_level debug shows the traceback)", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0
