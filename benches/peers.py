"""sketchpipe against what a user would write instead — one DuckDB query, or numpy and
scikit-learn — on the same generated files, in one run.

Requirements (nothing is installed at run time): a release build of sketchpipe, and Python 3
with duckdb, numpy, pyarrow and scikit-learn. From the repository root:

    cargo build --release
    python3 benches/peers.py [--ids 2000000] [--rows 1000000] [--dim 256]
                             [--sketch-rows 4000000] [--sketch-dim 50] [--rounds 3]
                             [--jl-size 128] [--only prune,eigen,sketch]
                             [--bin target/release/sketchpipe]

It generates its inputs with `sketchpipe generate` into a temporary directory and times whole
processes from the files to the written answer, rounds interleaved (A B C … A B C …) so that
a drift of the machine's speed hits every command alike. Each pair:

* `prune`: EL2N averaged by id over 3 runs × `--ids` ids × 10 classes (`generate logits`),
  the per-id table written to Parquet with its rank — a `prune_scores` stage with `run`
  against one DuckDB query (softmax with `list_transform`, `avg`/`stddev_samp`/`count` by id,
  `row_number() OVER (ORDER BY el2n, id)`, `COPY … TO` Parquet); and the same with GraNd
  (the logits as the embedding, the stage with `embedding`, the query with the norm term).
* `eigen`: the top eigenvector of a `--rows` × `--dim` `f32` low-rank table (gap 10) —
  `frequent-directions` (ℓ = 32) and `exact` against numpy `A.T @ A` + `eigh` (the table read
  with pyarrow), and `random-order` against scikit-learn `IncrementalPCA(n_components=1,
  batch_size=10000)` fed record batches of 10 000 rows from pyarrow.
* `sketch`: a coordinated sample of 1 000 of `--sketch-rows` × `--sketch-dim` rows keyed by
  id — `priority` against DuckDB `ORDER BY hash(id) / ‖row‖² LIMIT 1000`, and `threshold`
  against DuckDB's two-pass `WHERE hash(id) / 2⁶⁴ < 1000 ‖row‖² / ‖A‖²_F` — each sample
  written to Parquet; and the raw list-column scan, `sketchpipe sql "SELECT count(*),
  sum(array_length(emb)) …"` and `… sum(array_sum(emb))` against the same queries in DuckDB
  (`len`, which DuckDB can answer from the lists' offsets, and `list_sum`, which decodes
  every value).
  And the linear sketches, `jl` (`--jl-size`, default 128) and `countsketch` (size 1 000),
  against the numpy code a user would write: the same `ΠA` with signs (JL) or buckets and
  signs (CountSketch) from a multiplicative hash of the key, in record batches of 65 536.

Each answer is checked against its peer's (EL2N by id to 1e-6; the eigenvector's alignment
with numpy's; the sample's size). For the eigen and sketch tables it also times the decode
floor: `sketchpipe sql` reading every value of the list column, which no stage can beat. It prints the median seconds and peak RSS of every
command and each ratio peer / sketchpipe (> 1: sketchpipe is faster).
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

PY_EIGEN = r"""
import sys, numpy as np, pyarrow.parquet as pq
path, kind, out = sys.argv[1:4]
if kind == "numpy":
    col = pq.read_table(path, columns=["emb"]).column("emb").combine_chunks()
    a = col.flatten().to_numpy().reshape(len(col), -1).astype(np.float64)
    w, v = np.linalg.eigh(a.T @ a)
    top = v[:, -1]
else:
    from sklearn.decomposition import IncrementalPCA
    model = IncrementalPCA(n_components=1, batch_size=10000)
    for b in pq.ParquetFile(path).iter_batches(batch_size=10000, columns=["emb"]):
        col = b.column(0)
        model.partial_fit(col.flatten().to_numpy().reshape(len(col), -1))
    top = model.components_[0]
np.save(out, top)
"""

# The linear sketches a numpy user would write: coordinated through a multiplicative hash of
# the key (so two tables sketched apart combine), in record batches of 65 536 rows.
PY_LINEAR = r"""
import sys, numpy as np, pyarrow.parquet as pq
path, kind, t, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
M1, M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)
s, total = None, 0.0
for b in pq.ParquetFile(path).iter_batches(batch_size=65536, columns=["id", "emb"]):
    ids = b.column(0).to_numpy().astype(np.uint64)
    col = b.column(1)
    a = col.flatten().to_numpy().reshape(len(col), -1).astype(np.float64)
    total += float(np.einsum("ij,ij->", a, a))
    if s is None:
        s = np.zeros((t, a.shape[1]))
    if kind == "countsketch":
        bucket = ((ids * M1) >> np.uint64(40)) % np.uint64(t)
        sign = np.where(((ids * M2) >> np.uint64(63)) == 1, -1.0, 1.0)
        for j in range(a.shape[1]):
            s[:, j] += np.bincount(bucket.astype(np.int64), weights=sign * a[:, j], minlength=t)
    else:
        signs = np.empty((len(ids), t))
        for r0 in range(0, t, 64):
            h = (ids + np.uint64((r0 // 64 + 1) * int(M2) % 2**64)) * M1
            width = min(64, t - r0)
            bits = (h[:, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)
            signs[:, r0:r0 + width] = 1.0 - 2.0 * bits
        s += signs.T @ a / np.sqrt(t)
np.save(out, s)
np.save(out + ".total.npy", np.array(total))
"""

PY_DUCK = r"""
import sys, duckdb
duckdb.connect().execute(open(sys.argv[1]).read()).fetchall()
"""

# EL2N per row: softmax through list_transform, then the distance to the one-hot label.
DUCK_PRUNE = """
COPY (
WITH m AS (SELECT id, label, logits, list_max(logits) AS mx FROM read_parquet('{src}/*.parquet')),
p AS (SELECT id, label, logits, list_transform(logits, lambda x: exp(x - mx)) AS e FROM m),
z AS (SELECT id, label, logits, e, list_sum(e) AS z FROM p),
s AS (SELECT id, label, sqrt(list_sum(list_transform(e, lambda x, i:
        pow(x / z - CASE WHEN i - 1 = label THEN 1 ELSE 0 END, 2)))) AS el2n{grand_row} FROM z)
SELECT id, min(label) AS label, avg(el2n) AS el2n, stddev_samp(el2n) AS el2n_std{grand_cols},
       count(*) AS runs, row_number() OVER (ORDER BY avg(el2n), id) - 1 AS rank
FROM s GROUP BY id
) TO '{out}' (FORMAT parquet)
"""
GRAND_ROW = (",\n        sqrt(list_sum(list_transform(e, lambda x, i: pow(x / z - CASE WHEN i - 1 = "
             "label THEN 1 ELSE 0 END, 2)))) * sqrt(list_sum(list_transform(logits, lambda x: x * "
             "x)) + 1) AS grand")
GRAND_COLS = ", avg(grand) AS grand, stddev_samp(grand) AS grand_std"

DUCK_PRIORITY = """
COPY (SELECT id, emb FROM read_parquet('{src}')
      ORDER BY hash(id) / list_sum(list_transform(emb, lambda x: x * x)) LIMIT {k})
TO '{out}' (FORMAT parquet)
"""
DUCK_SCAN = "SELECT count(*), sum({f}(emb)) FROM read_parquet('{src}')"
DUCK_THRESHOLD = """
COPY (
WITH w AS (SELECT id, emb, list_sum(list_transform(emb, lambda x: x * x)) AS w
           FROM read_parquet('{src}')),
total AS (SELECT sum(w) AS f FROM w)
SELECT id, emb FROM w, total WHERE hash(id) / 18446744073709551616.0 < least(1, {k} * w / f)
) TO '{out}' (FORMAT parquet)
"""


def timed(cmd):
    """Wall seconds and peak RSS (MiB) of one whole process."""
    start = time.monotonic()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    err = proc.stderr.read().decode()
    if status != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024


class Bench:
    def __init__(self, binary, tmp):
        self.binary, self.tmp = binary, tmp
        self.commands = {}
        self.pairs = []  # (label, sketchpipe command, peer command)

    def generate(self, *args):
        subprocess.run([self.binary, "-q", "generate", *map(str, args)], check=True)

    def stage(self, name, sources, stage):
        path = self.tmp / f"{name}.toml"
        path.write_text(f'[pipeline]\noutput_dir = "out-{name}"\n{sources}\n[stages.s]\n{stage}')
        self.commands[name] = [self.binary, "-q", "run", path]
        return self.tmp / f"out-{name}" / "s"

    def duck(self, name, sql):
        path = self.tmp / f"{name}.sql"
        path.write_text(sql)
        self.commands[name] = [sys.executable, self.tmp / "duck.py", path]

    def scan(self, name, table, column, f="array_length"):
        """The decode floor: `sketchpipe sql` reading every value of the list column."""
        self.commands[name] = [self.binary, "-q", "sql",
                               f"SELECT count(*), sum({f}({column})) FROM '{table}'"]

    def python(self, name, *args, script="eigen.py"):
        self.commands[name] = [sys.executable, self.tmp / script, *args]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", type=int, default=2_000_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--sketch-rows", type=int, default=4_000_000)
    ap.add_argument("--sketch-dim", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jl-size", type=int, default=128)
    ap.add_argument("--only", default="prune,eigen,sketch")
    ap.add_argument("--bin", default="target/release/sketchpipe")
    a = ap.parse_args()
    only = set(a.only.split(","))
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    binary = str(pathlib.Path(a.bin).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "duck.py").write_text(PY_DUCK)
        (tmp / "eigen.py").write_text(PY_EIGEN)
        (tmp / "linear.py").write_text(PY_LINEAR)
        b = Bench(binary, tmp)
        checks = []

        if "prune" in only:
            b.generate("logits", "--out", tmp / "logs", "--rows", a.ids, "--runs", 3,
                       "--classes", 10)
            src = '[sources.raw]\npath = "logs"\n'
            keys = 'op = "prune_scores"\nid = "id"\nlogits = "logits"\nrun = "run"\n'
            el2n_out = b.stage("prune", src, 'source = "raw"\n' + keys)
            grand_src = src + '[sources.t]\nsql = "SELECT *, logits AS emb FROM raw"\n'
            grand_out = b.stage("prune-grand", grand_src,
                                'source = "t"\nembedding = "emb"\n' + keys)
            for name, grand in (("duck-prune", False), ("duck-prune-grand", True)):
                b.duck(name, DUCK_PRUNE.format(src=tmp / "logs", out=tmp / f"{name}.parquet",
                                               grand_row=GRAND_ROW if grand else "",
                                               grand_cols=GRAND_COLS if grand else ""))
            b.pairs += [("prune_scores EL2N by id, 3 runs", "prune", "duck-prune"),
                        ("prune_scores EL2N + GraNd by id", "prune-grand", "duck-prune-grand")]

            def prune_check(ours, theirs, column):
                x = pq.read_table(ours / "scores.parquet", columns=["id", column]).sort_by("id")
                y = pq.read_table(theirs, columns=["id", column]).sort_by("id")
                diff = pc.max(pc.abs(pc.subtract(x.column(column), y.column(column)))).as_py()
                return f"max |{column} - DuckDB's| = {diff:.1e}", diff < 1e-6
            checks += [lambda: prune_check(el2n_out, tmp / "duck-prune.parquet", "el2n"),
                       lambda: prune_check(grand_out, tmp / "duck-prune-grand.parquet", "grand")]

        if "eigen" in only:
            table = tmp / "low.parquet"
            b.generate("low-rank", "--out", table, "--rows", a.rows, "--dim", a.dim, "--gap", 10)
            src = '[sources.t]\npath = "low.parquet"\n'
            outs = {}
            for alg in ("frequent-directions", "exact", "random-order"):
                outs[alg] = b.stage(alg, src, f'source = "t"\nop = "top_eigenvector"\n'
                                    f'columns = ["emb"]\nalgorithm = "{alg}"\n')
            b.scan("scan-low", table, "emb")
            b.python("numpy", table, "numpy", tmp / "numpy.npy")
            b.python("ipca", table, "ipca", tmp / "ipca.npy")
            b.pairs += [("top eigenvector, frequent-directions vs numpy A.T@A + eigh",
                         "frequent-directions", "numpy"),
                        ("top eigenvector, exact vs numpy A.T@A + eigh", "exact", "numpy"),
                        ("top eigenvector, random-order vs IncrementalPCA(1)",
                         "random-order", "ipca")]

            def vector(alg):
                return pq.read_table(outs[alg] / "vector.parquet").column("value").to_numpy()

            def align(v, name):
                u = np.load(tmp / "numpy.npy")
                cos2 = float(v @ u) ** 2 / float(v @ v) / float(u @ u)
                return f"{name}: <v, v_numpy>^2 = {cos2:.5f}", cos2 > 0.95
            checks += [lambda alg=alg: align(vector(alg), alg) for alg in outs]
            checks.append(lambda: align(np.load(tmp / "ipca.npy"), "IncrementalPCA"))

        if "sketch" in only:
            table = tmp / "wide.parquet"
            b.generate("low-rank", "--out", table, "--rows", a.sketch_rows, "--dim",
                       a.sketch_dim, "--gap", 10)
            src = '[sources.t]\npath = "wide.parquet"\n'
            b.scan("scan-wide", table, "emb")
            b.duck("duck-scan-wide", DUCK_SCAN.format(src=table, f="len"))
            b.pairs.append(("count + sum of list lengths (a list-column scan), `sketchpipe sql`",
                            "scan-wide", "duck-scan-wide"))
            b.scan("sum-wide", table, "emb", f="array_sum")
            b.duck("duck-sum-wide", DUCK_SCAN.format(src=table, f="list_sum"))
            b.pairs.append(("count + sum of the list values (every value decoded), `sketchpipe sql`",
                            "sum-wide", "duck-sum-wide"))
            for method, sql in (("priority", DUCK_PRIORITY), ("threshold", DUCK_THRESHOLD)):
                b.stage(method, src, f'source = "t"\nop = "coordinated_sketch"\nkey = "id"\n'
                        f'columns = ["emb"]\nmethod = "{method}"\nsize = 1000\n')
                b.duck(f"duck-{method}",
                       sql.format(src=table, k=1000, out=tmp / f"duck-{method}.parquet"))
                b.pairs.append((f"coordinated sample of 1000, {method}", method,
                                f"duck-{method}"))

            for method, size in (("jl", a.jl_size), ("countsketch", 1000)):
                b.stage(method, src, f'source = "t"\nop = "coordinated_sketch"\nkey = "id"\n'
                        f'columns = ["emb"]\nmethod = "{method}"\nsize = {size}\n')
                b.python(f"numpy-{method}", table, method, size, tmp / f"numpy-{method}.npy",
                         script="linear.py")
                b.pairs.append((f"{method} sketch of size {size}, vs numpy (hashed signs/buckets)",
                                method, f"numpy-{method}"))

            def linear(method):
                s = np.load(tmp / f"numpy-{method}.npy")
                total = float(np.load(tmp / f"numpy-{method}.npy.total.npy"))
                ratio = float((s * s).sum()) / total
                rows = pq.read_metadata(tmp / f"out-{method}/s/sketch.parquet").num_rows
                text = (f"{method}: numpy's ||S||_F^2 / ||A||_F^2 = {ratio:.3f}, ours wrote "
                        f"{rows} sketch row(s)")
                return text, 0.5 < ratio < 1.5 and rows > 0
            checks += [lambda m=m: linear(m) for m in ("jl", "countsketch")]

            def sample(method):
                rows = pq.read_metadata(tmp / f"out-{method}/s/sketch.parquet").num_rows
                duck = pq.read_metadata(tmp / f"duck-{method}.parquet").num_rows
                ok = rows == duck == 1000 if method == "priority" else abs(rows - duck) < 200
                return f"{method}: {rows} rows sampled, DuckDB {duck}", ok
            checks += [lambda m=m: sample(m) for m in ("priority", "threshold")]

        runs = {name: [] for name in b.commands}
        for _ in range(a.rounds):
            for name, cmd in b.commands.items():
                runs[name].append(timed(cmd))
        med = {n: statistics.median(w for w, _ in r) for n, r in runs.items()}
        rss = {n: statistics.median(m for _, m in r) for n, r in runs.items()}

        print(f"{a.rounds} rounds interleaved; medians. prune: {a.ids} ids x 3 runs x 10 classes;"
              f" eigen: {a.rows} x {a.dim} f32; sketch: {a.sketch_rows} x {a.sketch_dim} f32\n")
        print("| task | sketchpipe s | peer s | peer / sketchpipe | RSS MiB (ours, peer) |")
        print("|---|---|---|---|---|")
        for label, ours, peer in b.pairs:
            print(f"| {label} | {med[ours]:.2f} | {med[peer]:.2f} | {med[peer] / med[ours]:.2f} |"
                  f" {rss[ours]:.0f}, {rss[peer]:.0f} |")
        print()
        if "eigen" in only:
            print(f"frequent-directions / exact: {med['frequent-directions'] / med['exact']:.2f}"
                  " (target <= 1)")
            print(f"decode floor of the eigen table (sketchpipe sql reading every value): "
                  f"{med['scan-low']:.2f} s; random-order / floor: "
                  f"{med['random-order'] / med['scan-low']:.2f}")
        if "sketch" in only:
            print(f"decode floor of the sketch table: {med['scan-wide']:.2f} s; priority / floor: "
                  f"{med['priority'] / med['scan-wide']:.2f}")
        failed = False
        print()
        for check in checks:
            text, ok = check()
            print(("ok   " if ok else "FAIL ") + text)
            failed |= not ok
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
