"""What estimating the mean from a prefix costs `pca` with `algorithm = "random-order"`.

Rows `mu + z diag(sqrt(lambda)) Q^T` (n = 200 000, d = 64, a mean of N(0, 30^2) coordinates, the
centred gap lambda_1 / lambda_2 = 2), in random order; the top centred eigenvector's
alignment <v, v_1>^2 over 8 seeds with the mean from the first 64, 256 or 4096 rows
(`prefix_rows`, the default 4096) and from the shuffle's spill pass (exact). Needs numpy and
pyarrow; run from the repository root after a build:

    python3 benches/pca_prefix_cost.py [path/to/sketchpipe]
"""

import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/sketchpipe"
SEEDS = range(1, 9)
RUNS = {"p64": "prefix_rows = 64", "p256": "prefix_rows = 256",
        "p4096": "prefix_rows = 4096", "shuffle": "shuffle = true"}


def main():
    rng = np.random.default_rng(2)
    n, d = 200_000, 64
    lam = np.array([2.0] + [1.0] * 3 + list(np.linspace(0.8, 0.05, d - 4)))
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = (rng.standard_normal((n, d)) * np.sqrt(lam)) @ q.T + 30.0 * rng.standard_normal(d)
    v1 = np.linalg.eigh(np.cov(x, rowvar=False))[1][:, -1]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        arr = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), d)
        pq.write_table(pa.table({"emb": arr}), tmp / "x.parquet")
        text = '[pipeline]\noutput_dir = "out"\n[sources.x]\npath = "x.parquet"\n'
        for s in SEEDS:
            for name, extra in RUNS.items():
                text += (f'[stages.{name}_{s}]\nop = "pca"\nsource = "x"\ncolumns = ["emb"]\n'
                         f'algorithm = "random-order"\nseed = {s}\n{extra}\n')
        (tmp / "p.toml").write_text(text)
        subprocess.run([BINARY, "-q", "run", str(tmp / "p.toml")], check=True)
        print("| mean from | min <v, v1>^2 | median |\n|---|---|---|")
        for name in RUNS:
            a = [float(pq.read_table(tmp / f"out/{name}_{s}/components.parquet")
                       .column("value").to_numpy() @ v1) ** 2 for s in SEEDS]
            print(f"| {name} | {min(a):.5f} | {np.median(a):.5f} |")


if __name__ == "__main__":
    main()
