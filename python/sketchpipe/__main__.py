"""``python -m sketchpipe …`` and the package's ``sketchpipe`` command: the command line of
the ``sketchpipe`` binary (``run``, ``sql``, ``generate``, …), the same code, in this package."""

from __future__ import annotations

import signal
import sys

from . import _native


def main() -> None:
    # The command handles Ctrl-C itself (temporary files removed, exit code 130), as the
    # binary does; Python's own handler would raise KeyboardInterrupt after it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_native.cli(["sketchpipe", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
