"""Writes the real tables under data/real/ and scikit-learn's PCA of each, the reference the
`pca` integration tests (tests/integration/pca.rs) compare against.

Requires scikit-learn, numpy and pyarrow (a development machine's, not CI's: the outputs are
committed). Run from the repository root:

    python3 tests/reference/pca_sklearn.py

Tables: scikit-learn's bundled wine (178 x 13), breast cancer (569 x 30) and digits
(1797 x 64; several pixels are constant) datasets, as Float64 columns named as scikit-learn
names them. For each table and each of `scale = false` / `true`, `PCA(n_components=k,
svd_solver="full")` on the rows centred (and, scaled, divided by the sample standard deviation
with n - 1, as R's prcomp(scale. = TRUE); constant columns dropped for the scaled runs).
"""

import json
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn import datasets
from sklearn.decomposition import PCA

ROOT = pathlib.Path(__file__).resolve().parents[2]
K = 5


def canonical(v):
    """Signs each component so its largest-magnitude coordinate is positive (sketchpipe's rule)."""
    out = []
    for row in v:
        i = int(np.argmax(np.abs(row)))
        out.append((row if row[i] >= 0 else -row).tolist())
    return out


def main():
    reference = {}
    tables = {
        "wine": datasets.load_wine(),
        "breast_cancer": datasets.load_breast_cancer(),
        "digits": datasets.load_digits(),
    }
    for name, bunch in tables.items():
        x = np.asarray(bunch.data, dtype=np.float64)
        columns = [str(c) for c in getattr(bunch, "feature_names")]
        pq.write_table(
            pa.table({c: x[:, j] for j, c in enumerate(columns)}),
            ROOT / "data" / "real" / f"{name}.parquet",
        )
        runs = {}
        for scale in (False, True):
            keep = [j for j in range(x.shape[1]) if not scale or x[:, j].std() > 0]
            xs = x[:, keep]
            mean = xs.mean(axis=0)
            std = xs.std(axis=0, ddof=1)
            z = (xs - mean) / std if scale else xs
            pca = PCA(n_components=K, svd_solver="full").fit(z)
            runs["scaled" if scale else "centred"] = {
                "columns": [columns[j] for j in keep],
                "components": canonical(pca.components_),
                "explained_variance": pca.explained_variance_.tolist(),
                "explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
                "mean": mean.tolist(),
                "scale": std.tolist() if scale else None,
            }
        reference[name] = {"rows": int(x.shape[0]), "runs": runs}
    out = ROOT / "tests" / "reference" / "pca_sklearn.json"
    out.write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
