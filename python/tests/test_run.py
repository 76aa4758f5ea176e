"""sketchpipe.run / sketchpipe.sql: the CLI's runner and query, their errors, and Ctrl-C."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow.parquet as pq
import pytest

import sketchpipe
from conftest import embeddings, run_cli


def pipeline(tmp: pathlib.Path, out: str = "out") -> pathlib.Path:
    embeddings(tmp / "emb.parquet", n=4000, d=8)
    p = tmp / "p.toml"
    p.write_text(
        textwrap.dedent(
            f"""
            [pipeline]
            name = "py"
            output_dir = "{out}"
            [sources.t]
            path = "emb.parquet"
            [stages.top]
            source = "t"
            op = "top_eigenvector"
            columns = ["emb"]
            algorithm = "exact"
            [stages.sk]
            source = "t"
            op = "coordinated_sketch"
            key = "id"
            columns = ["emb"]
            size = 50
            """
        )
    )
    return p


def test_run_returns_what_the_cli_writes(cli, tmp_path):
    p = pipeline(tmp_path)
    out = sketchpipe.run(p, quiet=True)
    assert set(out) == {"top", "sk"}
    assert set(out["top"]) >= {"vector", "stats"}
    run_cli(cli, "run", str(p), "--output-dir", str(tmp_path / "cli"))
    for stage, tables in out.items():
        for name, table in tables.items():
            theirs = pq.read_table(tmp_path / "cli" / stage / f"{name}.parquet")
            assert table.equals(theirs), (stage, name)


def test_run_overrides_and_dates(tmp_path):
    p = pipeline(tmp_path)
    out = sketchpipe.run(p, set={"sk.size": 20}, run_date="2026-01-02", quiet=True)
    assert out["sk"]["stats"].column("size")[0].as_py() == 20
    assert (tmp_path / "out" / "sk" / "date=2026-01-02" / "sketch.parquet").exists()
    with pytest.raises(sketchpipe.ConfigError, match="run_date"):
        sketchpipe.run(p, run_date="yesterday", quiet=True)


def test_sql_over_outputs(tmp_path):
    p = pipeline(tmp_path)
    sketchpipe.run(p, quiet=True)
    t = sketchpipe.sql("SELECT rows, dim FROM top.stats", pipeline=p)
    assert t.to_pylist() == [{"rows": 4000, "dim": 8}]
    empty = sketchpipe.sql("SELECT rows FROM top.stats WHERE rows < 0", dir=tmp_path / "out")
    assert empty.num_rows == 0 and empty.column_names == ["rows"]
    with pytest.raises(sketchpipe.SketchpipeError, match="nope"):
        sketchpipe.sql("SELECT * FROM nope", pipeline=p)


def test_errors_are_the_clis(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[stages.x]\nop = "nonsense"\nsource = "t"\n')
    with pytest.raises(sketchpipe.ConfigError, match="unknown op `nonsense`"):
        sketchpipe.run(bad, quiet=True)
    with pytest.raises(sketchpipe.SketchpipeIOError, match="missing.toml"):
        sketchpipe.run(tmp_path / "missing.toml", quiet=True)
    assert sketchpipe.IOError is sketchpipe.SketchpipeIOError
    assert issubclass(sketchpipe.InputError, sketchpipe.SketchpipeError)


def test_ctrl_c_raises_keyboard_interrupt_and_cleans_up(tmp_path):
    embeddings(tmp_path / "big.parquet", n=400_000, d=32)
    p = tmp_path / "slow.toml"
    p.write_text(
        textwrap.dedent(
            """
            [pipeline]
            output_dir = "out"
            [sources.t]
            path = "big.parquet"
            [stages.top]
            source = "t"
            op = "top_eigenvector"
            columns = ["emb"]
            shuffle = true
            shuffle_memory = "8MiB"
            """
        )
    )
    script = textwrap.dedent(
        f"""
        import sys, sketchpipe
        print("start", flush=True)
        try:
            sketchpipe.run({str(p)!r}, quiet=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(7)
        print("finished", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    # Signal once the shuffle is spilling (its files are under the output's temp directory).
    tmp = tmp_path / "out" / ".sketchpipe-tmp"
    deadline = time.monotonic() + 60
    while not any(f.is_file() for f in tmp.rglob("*")) if tmp.exists() else True:
        assert time.monotonic() < deadline and proc.poll() is None, "the run never spilled"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 7, out
    assert "interrupted" in out
    leftovers = list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else []
    assert not [f for f in leftovers if f.is_file() and f.name != ".sketchpipe.lock"], leftovers


REPO = pathlib.Path(__file__).resolve().parents[2]


def test_the_search_demo_ranks_the_shipped_corpus(tmp_path):
    out = sketchpipe.run(REPO / "pipelines" / "search_demo.toml", output_dir=tmp_path, quiet=True)
    ranking = out["search"]["ranking"]
    exact = out["search_exact"]["ranking"].to_pylist()
    truth = {(r["table"], r["column"]): r["correlation"] for r in exact}
    rows = ranking.to_pylist()
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    top = rows[0]
    assert top["correlation_lower"] <= top["correlation"] <= top["correlation_upper"]
    # The top candidate is truly strongly correlated, and the catalog is one row per table.
    assert abs(truth[(top["table"], top["column"])]) > 0.8
    assert out["catalog"]["sketches"].num_rows == 30
    # The same estimate in SQL: the query sketched by the aggregate, the catalog's values.
    query = (REPO / "data" / "corpus" / "query.parquet").as_posix()
    q = sketchpipe.sql(
        "SELECT c.\"table\", join_correlation(q.s, c.sketch, 1, 1)['estimate'] AS r FROM "
        f"catalog_exact.sketches c, (SELECT coordinated_sketch(key, y, 'exact', 0, 7) AS s "
        f"FROM '{query}') q ORDER BY c.\"table\"",
        dir=tmp_path,
    ).to_pylist()
    assert len(q) == 30
    for row in q:
        assert row["r"] == pytest.approx(truth[(row["table"], "x")], abs=1e-12)


def test_a_corpus_is_a_pipeline_stage_not_an_accumulator():
    with pytest.raises(sketchpipe.ConfigError, match="table_column"):
        sketchpipe.CoordinatedSketch(key="id", table_column="t")
