"""el2n / grand / uniform_hash over arrays, against numpy references and the SQL functions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import sketchpipe
from sketchpipe import _native


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def el2n_ref(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = softmax(z.astype(np.float64))
    p[np.arange(len(y)), y] -= 1.0
    return np.sqrt((p * p).sum(axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [5, 200_000])
def test_el2n_matches_numpy(dtype, n):
    rng = np.random.default_rng(1)
    z = (rng.normal(size=(n, 10)) * 3).astype(dtype)
    y = rng.integers(0, 10, size=n)
    got = sketchpipe.el2n(z, y)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (n,)
    np.testing.assert_allclose(got, el2n_ref(z, y), rtol=1e-12, atol=1e-12)


def test_grand_matches_numpy():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(1000, 4))
    y = rng.integers(0, 4, size=1000)
    h = rng.normal(size=(1000, 8)).astype(np.float32)
    want = el2n_ref(z, y) * np.sqrt((h.astype(np.float64) ** 2).sum(axis=1) + 1.0)
    np.testing.assert_allclose(sketchpipe.grand(z, y, h), want, rtol=1e-12)


def test_probs_and_arrow_inputs_match_sql():
    z = pa.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], type=pa.list_(pa.float64()))
    y = pa.array([0, 1], type=pa.int32())
    got = sketchpipe.el2n(z, y, probs=True)
    assert isinstance(got, pa.Array)
    want = sketchpipe.sql(
        "SELECT el2n_probs(p, y) AS s "
        "FROM (VALUES ([0.7, 0.2, 0.1], 0), ([0.1, 0.1, 0.8], 1)) t(p, y)"
    ).column("s")
    assert got.to_pylist() == want.to_pylist()


def test_bad_label_names_the_row():
    z = np.zeros((4, 3))
    y = np.array([0, 1, 3, 0])
    with pytest.raises(sketchpipe.InputError, match="row 2"):
        sketchpipe.el2n(z, y)


def test_wrong_shapes_are_refused():
    with pytest.raises(sketchpipe.InputError, match="2-D"):
        sketchpipe.el2n(np.zeros(3), np.zeros(3, dtype=np.int64))
    with pytest.raises(sketchpipe.InputError, match="rows"):
        sketchpipe.el2n(np.zeros((3, 2)), np.zeros(4, dtype=np.int64))


def test_numpy_memory_arrives_uncopied():
    x = np.random.default_rng(3).normal(size=1000)
    assert _native.buffer_address(pa.array(x)) == x.ctypes.data
    m = np.random.default_rng(3).normal(size=(100, 8))
    rows = sketchpipe._rows_array(m, "m")
    assert _native.buffer_address(rows) == m.ctypes.data


def test_uniform_hash_matches_sql():
    keys = np.array([0, 1, 7, -5, 1 << 40], dtype=np.int64)
    got = sketchpipe.uniform_hash(keys, seed=42)
    want = [
        sketchpipe.sql(f"SELECT uniform_hash(CAST({k} AS BIGINT), 42) AS u").column("u")[0].as_py()
        for k in keys
    ]
    assert got.tolist() == want
    assert np.all((got > 0) & (got < 1))
    s = sketchpipe.uniform_hash(pa.array(["a", "b", None]), seed=1)
    assert s[2].as_py() is None
    assert s[0].as_py() == sketchpipe.sql("SELECT uniform_hash('a', 1) AS u").column("u")[0].as_py()
