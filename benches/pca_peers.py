"""`pca` against what a user would write instead, on the same Parquet file, in one run.

Requirements (nothing is installed at run time): a release build of sketchpipe, and Python 3
with numpy, pyarrow and scikit-learn. Run from the repository root:

    cargo build --release
    python3 benches/pca_peers.py [--rows 1000000] [--dim 256] [--rounds 3] [--bin target/release/sketchpipe]

It writes a low-rank table (`sketchpipe generate low-rank`, f32, gap 10) to a temporary
directory and times whole processes, end to end from the file, rounds interleaved
(A B C … A B C …) so that a drift of the machine's speed hits every command alike:

* `pca` random-order k = 1 against `top_eigenvector` random-order (centring must not cost a
  pass: the ratio should stay at most 1.2);
* `pca` exact k = 10 against scikit-learn `PCA(10)` (the whole table as one numpy array) and
  `IncrementalPCA(10)` (`partial_fit` on each pyarrow record batch of the file, default
  `batch_size`);
* the peak RSS of the `pca` exact stage at a quarter of the rows and at all of them (flat in n).

Each command's top component is checked against the exact one (<v, v1>^2 >= 0.99). It prints
the median seconds, peak RSS and the ratios (> 1: sketchpipe is faster).
"""

import argparse
import pathlib
import statistics
import subprocess
import sys
import tempfile

from peers import timed  # the same whole-process timer (benches/peers.py)

PY_PCA = r"""
import sys, numpy as np, pyarrow.parquet as pq
from sklearn.decomposition import PCA, IncrementalPCA
path, kind, out = sys.argv[1:4]
if kind == "pca":
    t = pq.read_table(path, columns=["emb"])
    col = t.column("emb").combine_chunks()
    x = col.flatten().to_numpy().reshape(len(col), -1)
    model = PCA(n_components=10).fit(x)
else:
    model = IncrementalPCA(n_components=10)
    for b in pq.ParquetFile(path).iter_batches(columns=["emb"]):
        col = b.column(0)
        model.partial_fit(col.flatten().to_numpy().reshape(len(col), -1))
np.save(out, model.components_[0])
"""


def pipeline(dir, name, stage):
    text = (f'[pipeline]\noutput_dir = "out-{name}"\n[sources.t]\npath = "t.parquet"\n'
            f'[stages.s]\nsource = "t"\ncolumns = ["emb"]\n{stage}')
    path = dir / f"{name}.toml"
    path.write_text(text)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default="target/release/sketchpipe")
    a = ap.parse_args()
    import numpy as np
    import pyarrow.parquet as pq

    binary = str(pathlib.Path(a.bin).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        subprocess.run([binary, "-q", "generate", "low-rank", "--out", str(tmp / "t.parquet"),
                        "--rows", str(a.rows), "--dim", str(a.dim), "--gap", "10"], check=True)
        quarter = tmp / "quarter"
        quarter.mkdir()
        subprocess.run([binary, "-q", "generate", "low-rank", "--out", str(quarter / "t.parquet"),
                        "--rows", str(a.rows // 4), "--dim", str(a.dim), "--gap", "10"], check=True)
        script = tmp / "peer.py"
        script.write_text(PY_PCA)
        ro = 'algorithm = "random-order"\n'
        commands = {
            "pca random-order k=1": [binary, "-q", "run", pipeline(tmp, "pro", 'op = "pca"\n' + ro)],
            "top_eigenvector random-order": [binary, "-q", "run",
                                             pipeline(tmp, "top", 'op = "top_eigenvector"\n' + ro)],
            "pca exact k=10": [binary, "-q", "run",
                               pipeline(tmp, "pex", 'op = "pca"\ncomponents = 10\n')],
            "pca exact k=10, n/4": [binary, "-q", "run",
                                    pipeline(quarter, "pex", 'op = "pca"\ncomponents = 10\n')],
            "scikit-learn PCA(10)": [sys.executable, script, tmp / "t.parquet", "pca",
                                     tmp / "pca.npy"],
            "scikit-learn IncrementalPCA(10)": [sys.executable, script, tmp / "t.parquet", "ipca",
                                                tmp / "ipca.npy"],
        }
        runs = {name: [] for name in commands}
        for _ in range(a.rounds):
            for name, cmd in commands.items():
                runs[name].append(timed([str(c) for c in cmd]))

        def first(path):
            t = pq.read_table(path)
            return t.column("value").to_numpy()[: a.dim]

        v1 = first(tmp / "out-pex/s/components.parquet")
        answers = {
            "pca random-order k=1": first(tmp / "out-pro/s/components.parquet"),
            "top_eigenvector random-order": pq.read_table(tmp / "out-top/s/vector.parquet")
            .column("value").to_numpy(),
            "scikit-learn PCA(10)": np.load(tmp / "pca.npy"),
            "scikit-learn IncrementalPCA(10)": np.load(tmp / "ipca.npy"),
        }
        print(f"rows {a.rows}, d {a.dim}, f32, {a.rounds} rounds interleaved; medians\n")
        print("| command | seconds | peak RSS MiB | <v, v1>^2 |\n|---|---|---|---|")
        med = {}
        for name, r in runs.items():
            med[name] = statistics.median(w for w, _ in r)
            rss = statistics.median(m for _, m in r)
            if name in answers:
                v = answers[name]
                align = f"{float(v @ v1) ** 2 / float(v @ v):.5f}"
            else:
                align = "reference" if name == "pca exact k=10" else "—"
            print(f"| {name} | {med[name]:.2f} | {rss:.0f} | {align} |")
        print("\n| ratio | value |\n|---|---|")
        print(f"| pca random-order / top_eigenvector random-order (≤ 1.2) | "
              f"{med['pca random-order k=1'] / med['top_eigenvector random-order']:.2f} |")
        for peer in ("scikit-learn PCA(10)", "scikit-learn IncrementalPCA(10)"):
            print(f"| {peer} / pca exact k=10 (> 1: sketchpipe faster) | "
                  f"{med[peer] / med['pca exact k=10']:.2f} |")


if __name__ == "__main__":
    main()
