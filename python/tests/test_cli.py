"""The package carries the command line (`python -m sketchpipe`, the `sketchpipe` script):
the binary's own code, its exit codes and messages."""

from __future__ import annotations

import subprocess
import sys

import sketchpipe


def sketchpipe_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sketchpipe", *args], capture_output=True, text=True
    )


def test_version_and_help():
    out = sketchpipe_cli("--version")
    assert out.returncode == 0 and sketchpipe.__version__ in out.stdout
    help_text = sketchpipe_cli("run", "--help")
    assert help_text.returncode == 0 and "PIPELINE" in help_text.stdout.upper()


def test_exit_codes_are_the_binarys(tmp_path):
    usage = sketchpipe_cli("frobnicate")
    assert usage.returncode == 2, usage.stderr
    missing = sketchpipe_cli("run", str(tmp_path / "nope.toml"))
    assert missing.returncode == 4 and "nope.toml" in missing.stderr
    ok = sketchpipe_cli("sql", "SELECT uniform_hash(7, 42) AS u")
    assert ok.returncode == 0 and "u" in ok.stdout
