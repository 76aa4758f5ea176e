#!/usr/bin/env python3
"""Dataset search on real public tables: which monthly series would explain US employment?

The tables are the Vega datasets (https://github.com/vega/vega-datasets; BSD-3-Clause), as the
`vega_datasets` package ships them offline (pip install vega_datasets pandas pyarrow; nothing
is downloaded at run time). They share one key, the month (`year * 12 + month`):

* query: `us-employment` (2006–2015, 120 months), target `nonfarm` (thousands of jobs);
* candidates: `stocks` (one table per symbol: monthly prices 2000–2010), `seattle-weather`
  (daily 2012–2015, averaged by month), `seattle-temps` and `sf-temps` (hourly 2010, averaged
  by month), `ohlc` (daily June–July 2009, averaged by month) and the other `us-employment` columns as a
  table of their own (`us-employment-sectors`, sharing every month with the query).

The corpus goes through a `coordinated_sketch` stage with `table_column` and `sketch_search`,
sampled (`size`, default 40 keys per table, `uniform` weights) and exact, and the script prints
each candidate column's estimate beside the truth of the exact join.

    python3 benches/case_study.py [--size 40] [--bin target/release/sketchpipe]
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import tempfile
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
from vega_datasets import local_data


def month_key(dates) -> list[int]:
    return [d.year * 12 + d.month - 1 for d in dates]


def corpus() -> tuple[pa.Table, pa.Table]:
    emp = local_data.us_employment()
    months = [int(m[:4]) * 12 + int(m[5:7]) - 1 for m in emp["month"]]
    query = pa.table({"key": months, "y": emp["nonfarm"].astype(float)})
    rows = {"table": [], "key": [], "value": []}

    def add(name: str, keys, values) -> None:
        rows["table"] += [name] * len(keys)
        rows["key"] += list(keys)
        rows["value"] += [float(v) for v in values]

    stocks = local_data.stocks()
    for symbol, g in stocks.groupby("symbol"):
        add(f"stocks-{symbol}", month_key(g["date"]), g["price"])
    for name, frame, column in [
        ("seattle-weather", local_data.seattle_weather(), "temp_max"),
        ("seattle-temps", local_data.seattle_temps(), "temp"),
        ("sf-temps", local_data.sf_temps(), "temp"),
        ("ohlc", local_data.ohlc(), "close"),
    ]:
        frame = frame.assign(key=month_key(frame["date"]))
        monthly = frame.groupby("key")[column].mean()
        add(name, monthly.index, monthly.values)
    add("us-employment-sectors", months, emp["construction"])
    return query, pa.table(rows)


def pipeline(size: int) -> str:
    stages = []
    for tag, method in [
        ("sampled", f'size = {size}\nweights = "uniform"'),
        ("exact", 'method = "exact"'),
    ]:
        stages.append(
            textwrap.dedent(
                f"""
                [stages.query_{tag}]
                op = "coordinated_sketch"
                source = "query"
                key = "key"
                columns = ["y"]
                seed = 7
                {method}

                [stages.catalog_{tag}]
                op = "coordinated_sketch"
                source = "corpus"
                key = "key"
                columns = ["value"]
                table_column = "table"
                seed = 7
                {method}

                [stages.search_{tag}]
                op = "sketch_search"
                query = "query_{tag}"
                catalog = "catalog_{tag}"
                """
            )
        )
    head = textwrap.dedent(
        """
        [pipeline]
        output_dir = "out"
        [sources.query]
        path = "query.parquet"
        [sources.corpus]
        path = "corpus.parquet"
        """
    )
    return head + "".join(stages)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--bin", default="target/release/sketchpipe")
    args = ap.parse_args()
    binary = str(pathlib.Path(args.bin).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        query, corp = corpus()
        pq.write_table(query, d / "query.parquet")
        pq.write_table(corp, d / "corpus.parquet")
        (d / "p.toml").write_text(pipeline(args.size))
        subprocess.run([binary, "-q", "run", str(d / "p.toml")], check=True)
        sampled = pq.read_table(
            d / "out" / "search_sampled" / "ranking.parquet"
        ).to_pylist()
        exact = {
            r["table"]: r
            for r in pq.read_table(
                d / "out" / "search_exact" / "ranking.parquet"
            ).to_pylist()
        }
        print(
            f"query: us-employment nonfarm, {query.num_rows} months; {len(exact)} candidate tables; size = {args.size}"
        )
        print(
            f"{'table':<24} {'join':>5} {'est.':>6} {'r exact':>8} {'r est.':>7} {'interval':>17} {'rank':>4} {'exact rank':>10}"
        )
        for r in sampled:
            e = exact[r["table"]]
            est = "null" if r["correlation"] is None else f"{r['correlation']:.3f}"
            ivl = (
                "(" + (r["note"] or "")[:15] + ")"
                if r["correlation"] is None
                else f"[{r['correlation_lower']:.2f}, {r['correlation_upper']:.2f}]"
            )
            js = "null" if r["join_size"] is None else f"{r['join_size']:.0f}"
            er = "null" if e["correlation"] is None else f"{e['correlation']:.3f}"
            print(
                f"{r['table']:<24} {e['join_size']:>5.0f} {js:>6} {er:>8} {est:>7} {ivl:>17} {r['rank']:>4} {e['rank']:>10}"
            )


if __name__ == "__main__":
    main()
