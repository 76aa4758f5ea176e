"""The streaming accumulators: against numpy, and bit for bit against the CLI's stage over the
same rows in the same order."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sketchpipe
from conftest import REPO, embeddings, run_cli


def cli_stage(cli, tmp: pathlib.Path, data: pathlib.Path, stage: str) -> dict:
    """Runs one stage over `data` with the CLI; returns its tables."""
    pipeline = tmp / "p.toml"
    pipeline.write_text(
        f'[pipeline]\noutput_dir = "out"\n[sources.t]\npath = "{data}"\n'
        f'[stages.s]\nsource = "t"\n{stage}\n'
    )
    run_cli(cli, "run", str(pipeline))
    out = tmp / "out" / "s"
    return {p.stem: pq.read_table(p) for p in out.glob("*.parquet")}


def feed(acc, path: pathlib.Path, batch_size: int = 1000):
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
        acc.update(batch)
    return acc


@pytest.mark.parametrize("algorithm", ["exact", "frequent-directions", "oja"])
def test_top_eigenvector_equals_cli(cli, tmp_path, algorithm):
    path = tmp_path / "emb.parquet"
    embeddings(path)
    te = feed(sketchpipe.TopEigenvector("emb", algorithm=algorithm, seed=3, rows=3000), path)
    mine = te.result()
    theirs = cli_stage(
        cli,
        tmp_path,
        path,
        f'op = "top_eigenvector"\ncolumns = ["emb"]\nalgorithm = "{algorithm}"\nseed = 3',
    )
    assert mine["vector"].equals(theirs["vector"])
    for column in ("eigenvalue", "rows", "dim"):
        assert mine["stats"].column(column).equals(theirs["stats"].column(column))


def test_top_eigenvector_matches_numpy(tmp_path):
    a = embeddings(tmp_path / "emb.parquet", n=2000, d=12)
    te = sketchpipe.TopEigenvector(algorithm="exact")
    for start in range(0, len(a), 300):
        te.update(a[start : start + 300])  # 2-D numpy batches
    w, v = np.linalg.eigh(a.T @ a)
    assert abs(abs(te.vector @ v[:, -1]) - 1.0) < 1e-9
    assert te.eigenvalue == pytest.approx(w[-1], rel=1e-10)


def test_random_order_needs_rows(tmp_path):
    a = embeddings(tmp_path / "emb.parquet", n=500, d=8)
    with pytest.raises(sketchpipe.ConfigError, match="rows="):
        sketchpipe.TopEigenvector(algorithm="random-order").update(a)
    te = sketchpipe.TopEigenvector(algorithm="random-order", rows=len(a), seed=1).update(a)
    assert te.result()["stats"].column("rows")[0].as_py() == 500


def test_pca_equals_cli(cli, tmp_path):
    path = tmp_path / "emb.parquet"
    a = embeddings(path, n=2500, d=10)
    p = feed(sketchpipe.PCA("emb", components=3), path)
    mine = p.result()
    theirs = cli_stage(cli, tmp_path, path, 'op = "pca"\ncolumns = ["emb"]\ncomponents = 3')
    assert mine["components"].equals(theirs["components"])
    assert mine["spectrum"].equals(theirs["spectrum"])
    c = a - a.mean(axis=0)
    w = np.linalg.eigvalsh(c.T @ c)[::-1][:3]
    got = np.array(mine["spectrum"].column("eigenvalue").to_pylist())
    np.testing.assert_allclose(got, w, rtol=1e-9)


def sketch_table(n: int, seed: int, offset: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "k": pa.array(np.arange(offset, offset + n, dtype=np.int64)),
            "x": pa.array(rng.normal(size=n)),
            "y": pa.array(rng.normal(size=n)),
        }
    )


def test_coordinated_sketch_equals_cli_and_round_trips(cli, tmp_path):
    t = sketch_table(5000, 1)
    pq.write_table(t, tmp_path / "a.parquet")
    s = sketchpipe.CoordinatedSketch(key="k", size=300, seed=9)
    for batch in t.to_batches(max_chunksize=700):
        s.update(batch)
    mine = s.result()
    theirs = cli_stage(
        cli,
        tmp_path,
        tmp_path / "a.parquet",
        'op = "coordinated_sketch"\nkey = "k"\ncolumns = ["x", "y"]\nsize = 300\nseed = 9',
    )
    assert mine["sketch"].equals(theirs["sketch"])
    back = sketchpipe.CoordinatedSketch.from_bytes(s.to_bytes())
    assert back.to_bytes() == s.to_bytes()
    assert back.result()["sketch"].equals(mine["sketch"])


def test_merge_of_halves_is_one_pass():
    t = sketch_table(4000, 2)
    whole = sketchpipe.CoordinatedSketch(key="k", size=200, seed=5).update(t)
    left = sketchpipe.CoordinatedSketch(key="k", size=200, seed=5).update(t.slice(0, 1500))
    right = sketchpipe.CoordinatedSketch(key="k", size=200, seed=5).update(t.slice(1500))
    merged = left.merge(right)
    assert merged.result()["sketch"].equals(whole.result()["sketch"])


def test_product_estimates_the_join():
    a = sketch_table(20000, 3)
    b = sketch_table(20000, 4, offset=10000)  # keys 10000..29999 overlap half of a's
    sa = sketchpipe.CoordinatedSketch(key="k", columns=["x"], method="exact").update(a)
    sb = sketchpipe.CoordinatedSketch(key="k", columns=["y"], method="exact").update(b)
    got = sa.product(sb)["product"].column("value")[0].as_py()
    want = float(np.dot(a["x"].to_numpy()[10000:], b["y"].to_numpy()[:10000]))
    assert got == pytest.approx(want, rel=1e-12)
    sc = sketchpipe.CoordinatedSketch(key="k", columns=["y"], method="exact", seed=1).update(b)
    with pytest.raises(sketchpipe.InputError, match="seed"):
        sa.product(sc)


def test_bad_arguments_are_refused_by_name(tmp_path):
    t = sketch_table(100, 5)
    with pytest.raises(sketchpipe.ConfigError, match="no column `z`"):
        sketchpipe.CoordinatedSketch(key="k", columns=["z"]).update(t)
    with pytest.raises(sketchpipe.ConfigError, match="algorithm"):
        sketchpipe.TopEigenvector("x", algorithm="nope")
    with pytest.raises(sketchpipe.ConfigError, match="unknown key"):
        sketchpipe.TopEigenvector("x", bogus=1)
    with pytest.raises(sketchpipe.ConfigError, match="shuffle"):
        sketchpipe.TopEigenvector("x", shuffle=True)
    dup = pa.table({"k": [1, 2, 2], "x": [1.0, 2.0, 3.0]})
    s = sketchpipe.CoordinatedSketch(key="k", columns=["x"]).update(dup)
    with pytest.raises(sketchpipe.InputError, match="repeats a key"):
        s.result()
    with pytest.raises(sketchpipe.InputError, match="failed earlier: .*repeats a key"):
        s.result()


def test_polars_frames_and_readers_give_the_tables_sketch():
    import polars as pl

    t = sketch_table(3000, 6)
    via_polars = sketchpipe.CoordinatedSketch(key="k", size=100).update(pl.from_arrow(t))
    reader = pa.RecordBatchReader.from_batches(t.schema, t.to_batches(max_chunksize=512))
    via_reader = sketchpipe.CoordinatedSketch(key="k", size=100).update(reader)
    via_table = sketchpipe.CoordinatedSketch(key="k", size=100).update(t)

    class Bare:  # only the stream protocol: no schema attribute to read the names from
        def __arrow_c_stream__(self, requested_schema=None):
            return t.__arrow_c_stream__(requested_schema)

    via_bare = sketchpipe.CoordinatedSketch(key="k", size=100).update(Bare())
    assert via_polars.to_bytes() == via_reader.to_bytes() == via_table.to_bytes()
    assert via_bare.to_bytes() == via_table.to_bytes()


PRUNE = {
    "id": "id",
    "label": "label",
    "logits": "logits",
    "run": "run",
    "keep_fraction": 0.5,
    "mode": "keep_max",
}


def test_prune_scores_equals_cli(cli, tmp_path):
    runs = sorted((REPO / "data" / "logits").glob("run-*.parquet"))
    ps = sketchpipe.PruneScores(**PRUNE)
    for f in runs:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=4096):
            ps.update(batch)
    mine = ps.result()
    keys = "\n".join(f"{k} = {json.dumps(v)}" for k, v in PRUNE.items())
    theirs = cli_stage(cli, tmp_path, REPO / "data" / "logits", f'op = "prune_scores"\n{keys}')
    assert mine["scores"].equals(theirs["scores"])
    assert mine["stats"].column("runs").equals(theirs["stats"].column("runs"))
    ids = set(pq.read_table(runs[0], columns=["id"])["id"].to_pylist())
    assert mine["scores"].num_rows == len(ids)


def test_duplicate_keys_sum_spools_and_equals_cli(cli, tmp_path):
    t = pa.table({"k": [1, 2, 2, 3, 3, 3], "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    pq.write_table(t, tmp_path / "d.parquet")
    s = sketchpipe.CoordinatedSketch(
        key="k", columns=["x"], method="exact", duplicate_keys="sum"
    ).update(t)
    theirs = cli_stage(
        cli,
        tmp_path,
        tmp_path / "d.parquet",
        'op = "coordinated_sketch"\nkey = "k"\ncolumns = ["x"]\nmethod = "exact"\n'
        'duplicate_keys = "sum"',
    )
    assert s.result()["sketch"].equals(theirs["sketch"])


@pytest.mark.parametrize(
    "cls,keys",
    [
        (sketchpipe.TopEigenvector, {"algorithm": "exact"}),
        (sketchpipe.TopEigenvector, {"algorithm": "frequent-directions", "ell": 8}),
        (sketchpipe.PCA, {"components": 2}),
    ],
)
def test_states_merge_and_round_trip(tmp_path, cls, keys):
    a = embeddings(tmp_path / "emb.parquet", n=3000, d=10)
    whole = cls(**keys).update(a)
    left, right = cls(**keys).update(a[:1200]), cls(**keys).update(a[1200:])
    merged = left.merge(right)
    back = cls.from_bytes(merged.to_bytes())
    for name, table in merged.result().items():
        assert back.result()[name].equals(table), name
    w, v = np.linalg.eigh(a.T @ a) if cls is sketchpipe.TopEigenvector else (None, None)
    if keys.get("algorithm") == "exact":
        np.testing.assert_allclose(merged.vector, whole.vector, rtol=1e-10, atol=1e-12)
        assert merged.eigenvalue == pytest.approx(w[-1], rel=1e-12)
    elif cls is sketchpipe.TopEigenvector:  # Frequent Directions: σ₁² − Δ ≤ eigenvalue ≤ σ₁²
        bound = merged.result()["stats"].column("error_bound")[0].as_py()
        assert w[-1] - bound - 1e-9 <= merged.eigenvalue <= w[-1] * (1 + 1e-12)
    else:
        np.testing.assert_allclose(
            np.array(merged.result()["spectrum"].column("eigenvalue").to_pylist()),
            np.array(whole.result()["spectrum"].column("eigenvalue").to_pylist()),
            rtol=1e-10,
        )
    with pytest.raises(sketchpipe.ConfigError, match="same op and keys"):
        left.merge(cls(**dict(keys, seed=99)).update(a[:10]))


def test_random_order_does_not_merge(tmp_path):
    a = embeddings(tmp_path / "emb.parquet", n=200, d=4)
    te = sketchpipe.TopEigenvector(algorithm="random-order", rows=200).update(a)
    with pytest.raises(sketchpipe.ConfigError, match="merges"):
        te.to_bytes()


def test_ctrl_c_stops_a_long_update():
    import itertools
    import os
    import signal
    import threading

    batch = pa.record_batch({"x": pa.array(np.ones(10_000)), "y": pa.array(np.ones(10_000))})
    endless = pa.RecordBatchReader.from_batches(batch.schema, itertools.repeat(batch))
    te = sketchpipe.TopEigenvector(["x", "y"], algorithm="exact")
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            te.update(endless)
    finally:
        timer.cancel()


@pytest.mark.parametrize(
    "cls,keys",
    [
        (sketchpipe.TopEigenvector, {"algorithm": "exact"}),
        (sketchpipe.PCA, {"components": 2}),
        (sketchpipe.PCA, {"components": 2, "algorithm": "frequent-directions"}),
    ],
)
def test_batch_sizes_do_not_change_a_bit(tmp_path, cls, keys):
    path = tmp_path / "emb.parquet"
    embeddings(path, n=9000, d=40)
    results = []
    for size in (9000, 1000, 777, 4096):
        acc = cls("emb", **keys)
        for batch in pq.ParquetFile(path).iter_batches(batch_size=size):
            acc.update(batch)
        results.append(acc.result())
    for other in results[1:]:
        for name, table in results[0].items():
            assert other[name].equals(table), name


def test_regression_over_the_join_equals_least_squares():
    rng = np.random.default_rng(12)
    n = 4000
    x = rng.normal(size=(n, 2))
    left = pa.table({"k": np.arange(n), "x1": x[:, 0], "x2": x[:, 1]})
    keys = np.arange(n // 2, n + n // 2)  # half the keys shared
    y = np.where(keys < n, 2.0 * x[keys % n, 0] - x[keys % n, 1], 0.0) + rng.normal(size=n)
    right = pa.table({"k": keys, "y": y})
    a = sketchpipe.CoordinatedSketch(key="k", method="exact").update(left)
    b = sketchpipe.CoordinatedSketch(key="k", method="exact").update(right)
    got = a.regression(b, target="y")["coefficients"].sort_by("index")
    shared = keys < n
    want, *_ = np.linalg.lstsq(x[keys[shared]], y[shared], rcond=None)
    np.testing.assert_allclose(got.column("coefficient").to_numpy(), want, rtol=1e-9)
    assert got.column("feature").to_pylist() == ["x1", "x2"]
    ridge = a.regression(b, target="y", lambda_=100.0)["coefficients"].sort_by("index")
    assert np.linalg.norm(ridge.column("coefficient").to_numpy()) < np.linalg.norm(want)
