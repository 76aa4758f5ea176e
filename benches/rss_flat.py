"""Peak RSS of each stage at n and 10·n rows: does memory stay flat as the input grows?

Requirements: a release build of sketchpipe and Python 3 (standard library only). From the
repository root:

    cargo build --release
    python3 benches/rss_flat.py [--rows 1000000] [--dim 64] [--memory 256MiB]
                                [--only eigen,sketch,prune] [--bin target/release/sketchpipe]

It generates, with `sketchpipe generate`, a `--rows` and a 10 × `--rows` low-rank `f32`
table (`--dim` wide) and logged logits of 3 runs over `--rows / 10` and `--rows` ids, then
runs one stage at a time with `[pipeline] memory = --memory` on both sizes and prints each
stage's peak RSS (the kernel's `ru_maxrss` of the whole process), the ratio 10n / n (the goal:
below 1.2) and whether it stayed under the budget plus the documented fixed overhead of
128 MiB. The stages: `top_eigenvector` with every algorithm (`random-order` with `shuffle =
true`), a priority `coordinated_sketch`, and `prune_scores` over the runs.

At the defaults the larger table is 10 000 000 × 64 `f32` (about 2.6 GB on disk); the files
live in a temporary directory removed at the end.
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile

from peers import timed as peak  # wall seconds and peak RSS (MiB) of one process

OVERHEAD_MIB = 128


def mib(size):
    units = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    for unit, factor in units.items():
        if size.endswith(unit):
            return float(size[: -len(unit)]) * factor
    sys.exit(f"--memory {size}: give it in KiB, MiB or GiB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--memory", default="256MiB")
    ap.add_argument("--only", default="eigen,sketch,prune")
    ap.add_argument("--bin", default="target/release/sketchpipe")
    a = ap.parse_args()
    only = set(a.only.split(","))
    binary = str(pathlib.Path(a.bin).resolve())
    budget = mib(a.memory)

    def generate(*args):
        subprocess.run([binary, "-q", "generate", *map(str, args)], check=True)

    stages = []  # (label, source keys, stage keys, size name)
    eigen = ["exact", "frequent-directions", "oja", "random-order"]
    if "eigen" in only or "sketch" in only:
        for alg in eigen if "eigen" in only else []:
            extra = (f'shuffle = true\nshuffle_memory = "{a.memory}"\nseed = 1\n'
                     if alg == "random-order" else "")
            stages.append((f"top_eigenvector {alg}", "table",
                           f'op = "top_eigenvector"\ncolumns = ["emb"]\nalgorithm = "{alg}"\n'
                           + extra))
        if "sketch" in only:
            stages.append(("coordinated_sketch priority", "table",
                           'op = "coordinated_sketch"\nkey = "id"\ncolumns = ["emb"]\n'
                           'method = "priority"\nsize = 1000\n'))
    if "prune" in only:
        stages.append(("prune_scores (3 runs)", "logits",
                       'op = "prune_scores"\nid = "id"\nlogits = "logits"\nrun = "run"\n'))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        sizes = {"n": a.rows, "10n": 10 * a.rows}
        for name, n in sizes.items():
            if any(kind == "table" for _, kind, _ in stages):
                generate("low-rank", "--out", tmp / f"table-{name}.parquet", "--rows", n,
                         "--dim", a.dim, "--gap", 10)
            if any(kind == "logits" for _, kind, _ in stages):
                generate("logits", "--out", tmp / f"logits-{name}", "--rows", n // 10,
                         "--runs", 3, "--classes", 10)
        print(f"n = {a.rows} rows ({a.dim}-wide f32; prune: n/10 ids x 3 runs), "
              f"memory = {a.memory}, overhead allowed {OVERHEAD_MIB} MiB\n")
        print("| stage | RSS MiB at n | at 10n | 10n / n | under memory + overhead | s at 10n |")
        print("|---|---|---|---|---|---|")
        failed = False
        for label, kind, keys in stages:
            got = {}
            for name in sizes:
                source = (f"table-{name}.parquet" if kind == "table" else f"logits-{name}")
                pipeline = tmp / f"p-{name}.toml"
                pipeline.write_text(
                    f'[pipeline]\noutput_dir = "out-{name}"\nmemory = "{a.memory}"\n'
                    f'[sources.src]\npath = "{source}"\n[stages.s]\nsource = "src"\n{keys}')
                got[name] = peak([binary, "-q", "run", pipeline])
            ratio = got["10n"][1] / got["n"][1]
            under = max(got["n"][1], got["10n"][1]) <= budget + OVERHEAD_MIB
            failed |= ratio >= 1.2 or not under
            print(f"| {label} | {got['n'][1]:.0f} | {got['10n'][1]:.0f} | {ratio:.2f} | "
                  f"{'yes' if under else 'no'} | {got['10n'][0]:.1f} |")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
