"""sketchpipe.register: every sketchpipe SQL function in a `datafusion` SessionContext, through
DataFusion's FFI, giving what `sketchpipe sql` gives for the same query."""

from __future__ import annotations

import json
import pathlib

import datafusion
import pytest

import sketchpipe
from sketchpipe import _native

REFERENCE = json.loads(
    (
        pathlib.Path(__file__).resolve().parents[2]
        / "tests"
        / "reference"
        / "sql_function_queries.json"
    ).read_text()
)
T = REFERENCE["prelude"]
QUERIES = REFERENCE["queries"]


def test_every_function_has_a_query():
    scalar, aggregate = _native.functions()
    names = {f.name for f in scalar} | {f.name for f in aggregate}
    assert names == set(QUERIES), names ^ set(QUERIES)


@pytest.fixture(scope="module")
def ctx():
    c = datafusion.SessionContext()
    sketchpipe.register(c)
    return c


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_function_equals_sketchpipe_sql(ctx, name):
    query = T + QUERIES[name]
    theirs = ctx.sql(query).to_arrow_table()
    mine = sketchpipe.sql(query)
    assert theirs.num_rows == mine.num_rows > 0
    assert theirs.to_pylist() == mine.to_pylist()


def test_errors_cross_the_boundary(ctx):
    with pytest.raises(Exception, match="row 0"):
        ctx.sql("SELECT el2n(make_array(1.0, 2.0), 5)").to_arrow_table()


def test_mismatched_version_is_refused(monkeypatch):
    monkeypatch.setattr(datafusion, "__version__", "54.1.0")
    with pytest.raises(sketchpipe.ConfigError, match="datafusion 54.1.0"):
        sketchpipe.register(datafusion.SessionContext())
