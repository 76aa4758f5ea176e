"""The Python package against what a Python user would do instead, and against the CLI.

Requirements (nothing is installed at run time): the package installed with its optimised
build (`pip install ./python`), numpy and pyarrow in the same interpreter, and the release CLI.
From the repository root:

    cargo build --release && pip install ./python
    python3 benches/python_peers.py [--rows 10000000] [--classes 10] [--rounds 5]
        [--table bench-data/lowrank-d256-1074218.parquet] [--bin target/release/sketchpipe]
        [--only el2n,rss]

* `el2n`: EL2N of `--rows` × `--classes` `float32` logits from numpy — `sketchpipe.el2n`
  against the same computation written in numpy (max-subtracted softmax, one-hot subtracted,
  row norms), in one process, rounds interleaved. Both answers are checked equal to 1e-6.
* `rss`: out of core — `TopEigenvector` (`exact`) and `CoordinatedSketch` (`priority`,
  1 000 rows) fed `--table` (a list column `emb`; about 1 GB for 1 M × 256 `f32`; made with
  `sketchpipe generate low-rank` when missing) batch by batch through
  `pyarrow.parquet.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=8192)`, each
  in its own process, against the CLI's
  stage over the same file: peak RSS of each process, and the answers compared (the vector,
  the sketch table); and the bare `iter_batches` loop, with pyarrow's defaults and with
  `pre_buffer=False`, for what the reading alone holds.

It prints the median seconds, each ratio (> 1: sketchpipe is faster), and the RSS figures.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from peers import timed  # the same whole-process timer (benches/peers.py)

REPO = pathlib.Path(__file__).resolve().parents[1]


def el2n_numpy(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """What a numpy user writes."""
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return np.sqrt((p * p).sum(axis=1))


def bench_el2n(rows: int, classes: int, rounds: int) -> None:
    import sketchpipe

    rng = np.random.default_rng(0)
    z = (rng.normal(size=(rows, classes)) * 3).astype(np.float32)
    y = rng.integers(0, classes, size=rows)
    np.testing.assert_allclose(sketchpipe.el2n(z, y), el2n_numpy(z, y), atol=1e-6)
    times: dict[str, list[float]] = {"sketchpipe.el2n": [], "numpy": []}
    for _ in range(rounds):
        for name, f in (("sketchpipe.el2n", sketchpipe.el2n), ("numpy", el2n_numpy)):
            start = time.perf_counter()
            f(z, y)
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"el2n, {rows} x {classes} float32 logits, {rounds} rounds (median seconds)")
    for k, v in med.items():
        print(f"  {k:16s} {v:8.3f}")
    print(f"  ratio numpy / sketchpipe: {med['numpy'] / med['sketchpipe.el2n']:.2f}")


FEED = r"""
import sys, pyarrow.parquet as pq
path, kind, out = sys.argv[1:4]
if kind.startswith("bare"):  # the loop alone, with pyarrow's defaults or pre_buffer=False
    f = pq.ParquetFile(path) if kind == "bare-defaults" else pq.ParquetFile(path, pre_buffer=False)
    for batch in f.iter_batches(**({} if kind == "bare-defaults" else {"batch_size": 8192})):
        pass
    sys.exit(0)
import sketchpipe
if kind == "eigen":
    acc = sketchpipe.TopEigenvector("emb", algorithm="exact")
else:
    acc = sketchpipe.CoordinatedSketch(key="id", columns=["emb"], size=1000, seed=7)
# pre_buffer=False: pyarrow's default pre-buffers the file's column chunks (1.6 GiB peak for
# a 1 GiB file, with nothing but the loop itself); sketchpipe holds none of it.
for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=8192):
    acc.update(batch)
table = acc.result()["vector" if kind == "eigen" else "sketch"]
pq.write_table(table, out)
"""


def bench_rss(table: pathlib.Path, binary: pathlib.Path, rounds: int) -> None:
    import pyarrow.parquet as pq

    if not table.exists():
        table.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([binary, "-q", "generate", "low-rank", "--out", table, "--rows",
                        "1000000", "--dim", "256", "--gap", "10"], check=True)
    size = table.stat().st_size / 2**30
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "feed.py").write_text(FEED)
        stages = {
            "eigen": 'op = "top_eigenvector"\ncolumns = ["emb"]\nalgorithm = "exact"',
            "sketch": 'op = "coordinated_sketch"\nkey = "id"\ncolumns = ["emb"]\nsize = 1000\n'
                      'seed = 7',
        }
        print(f"out of core: {table} ({size:.2f} GiB), {rounds} rounds "
              "(median seconds, max peak RSS MiB)")
        for kind, stage in stages.items():
            pipeline = tmp / f"{kind}.toml"
            pipeline.write_text(f'[pipeline]\noutput_dir = "out-{kind}"\n[sources.t]\n'
                                f'path = "{table}"\n[stages.s]\nsource = "t"\n{stage}\n')
            cli = [binary, "-q", "run", pipeline]
            py = [sys.executable, tmp / "feed.py", table, kind, tmp / f"{kind}.parquet"]
            runs: dict[str, list[tuple[float, float]]] = {"CLI": [], "Python": []}
            for _ in range(rounds):
                runs["CLI"].append(timed(cli))
                runs["Python"].append(timed(py))
            name = "vector" if kind == "eigen" else "sketch"
            same = pq.read_table(tmp / f"out-{kind}" / "s" / f"{name}.parquet").equals(
                pq.read_table(tmp / f"{kind}.parquet"))
            print(f"  {kind}: the same {name} table as the CLI: {same}")
            for who, r in runs.items():
                print(f"    {who:7s} {statistics.median(t for t, _ in r):7.2f} s  "
                      f"{max(m for _, m in r):7.0f} MiB")
            extra = max(m for _, m in runs["Python"]) - max(m for _, m in runs["CLI"])
            print(f"    Python - CLI peak RSS: {extra:+.0f} MiB (goal: at most +150)")
        print("  the iter_batches loop alone, without sketchpipe:")
        for kind, what in (("bare-defaults", "pyarrow's defaults (pre_buffer, 64 Ki rows)"),
                           ("bare", "pre_buffer=False, batch_size=8192")):
            r = [timed([sys.executable, tmp / "feed.py", table, kind, "-"])
                 for _ in range(rounds)]
            print(f"    {what}: {statistics.median(t for t, _ in r):.2f} s, "
                  f"{max(m for _, m in r):.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--table", type=pathlib.Path,
                    default=REPO / "bench-data" / "lowrank-d256-1074218.parquet")
    ap.add_argument("--bin", type=pathlib.Path, default=REPO / "target" / "release" / "sketchpipe")
    ap.add_argument("--only", default="el2n,rss")
    args = ap.parse_args()
    only = set(args.only.split(","))
    # The RSS comparison first: a child's peak RSS counts the parent's at the fork (Linux
    # carries the forked copy's high-water mark over the exec), so it runs before el2n's
    # arrays exist.
    if "rss" in only:
        bench_rss(args.table.resolve(), args.bin.resolve(), max(1, args.rounds // 2))
    if "el2n" in only:
        bench_el2n(args.rows, args.classes, args.rounds)


if __name__ == "__main__":
    main()
