"""Shared fixtures: the CLI binary the bit-for-bit tests compare with, and small tables."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cli() -> list:
    """The `sketchpipe` command line to compare with: $SKETCHPIPE_BIN (CI points it at the
    cargo-built binary), else the package's own (`python -m sketchpipe`, the same code)."""
    env = os.environ.get("SKETCHPIPE_BIN")
    if env:
        if not pathlib.Path(env).is_file():
            raise RuntimeError(f"SKETCHPIPE_BIN={env} is not a file")
        return [env]
    return [sys.executable, "-m", "sketchpipe"]


def run_cli(
    cli: list, *args: str, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """`sketchpipe --quiet ARGS` (in `env`, if given); with `check`, a failure is an error."""
    out = subprocess.run(
        [*map(str, cli), "--quiet", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"sketchpipe {' '.join(args)} failed: {out.stderr}")
    return out


def embeddings(
    path: pathlib.Path, n: int = 3000, d: int = 16, seed: int = 7, first_id: int = 0
) -> np.ndarray:
    """A low-rank-plus-noise table `emb` (list<float64>) with an `id` from `first_id`, written
    to `path`."""
    rng = np.random.default_rng(seed)
    top = rng.normal(size=d)
    top /= np.linalg.norm(top)
    a = rng.normal(size=(n, d)) * 0.3 + np.outer(rng.normal(size=n) * 3.0, top)
    table = pa.table(
        {
            "id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), d).cast(
                pa.list_(pa.float64())
            ),
        }
    )
    pq.write_table(table, path, row_group_size=1000)
    return a
