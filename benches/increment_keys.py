"""What the cross-increment duplicate-key check costs an incremental `coordinated_sketch` run.

Writes `--files` Parquet files of `--rows` rows each (distinct int64 `id`s, a 64-wide f32
`emb`), merges all but the last with an incremental priority-sketch stage, then times (median
of `--rounds`) the increment that adds the last file — which also reads the key column of the
files already merged — against the same stage over the last file alone. Needs numpy and
pyarrow and a release build; run from the repository root:

    python3 benches/increment_keys.py [--files 10] [--rows 200000] [--bin target/release/sketchpipe]
"""

import argparse
import pathlib
import shutil
import statistics
import subprocess
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from peers import timed  # the whole-process timer of benches/peers.py

STAGE = ('[stages.sk]\nop = "coordinated_sketch"\nsource = "days"\nkey = "id"\n'
         'columns = ["emb"]\nsize = 1000\n')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bin", default="target/release/sketchpipe")
    a = ap.parse_args()
    binary = str(pathlib.Path(a.bin).resolve())
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "all").mkdir()
        (tmp / "one").mkdir()
        for f in range(a.files):
            emb = rng.standard_normal((a.rows, 64), dtype=np.float32)
            t = pa.table({
                "id": pa.array(np.arange(f * a.rows, (f + 1) * a.rows, dtype=np.int64)),
                "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), 64),
            })
            pq.write_table(t, tmp / "all" / f"day-{f:03}.parquet")
        last = tmp / "all" / f"day-{a.files - 1:03}.parquet"
        shutil.copy(last, tmp / "one" / last.name)
        head = '[pipeline]\noutput_dir = "{out}"\n[sources.days]\npath = "{src}"\n'
        inc = tmp / "inc.toml"
        inc.write_text(head.format(out="out-inc", src="all") + STAGE + "incremental = true\n")
        one = tmp / "one.toml"
        one.write_text(head.format(out="out-one", src="one") + STAGE)
        aside = tmp / last.name
        increment, alone = [], []
        for _ in range(a.rounds):
            shutil.rmtree(tmp / "out-inc", ignore_errors=True)
            shutil.move(last, aside)
            subprocess.run([binary, "-q", "run", str(inc)], check=True)
            shutil.move(aside, last)
            increment.append(timed([binary, "-q", "run", inc])[0])
            alone.append(timed([binary, "-q", "run", one])[0])
        i, o = statistics.median(increment), statistics.median(alone)
        print(f"{a.files - 1} merged files + 1 new, {a.rows} rows each, medians of {a.rounds}\n")
        print("| run | seconds |\n|---|---|")
        print(f"| the increment (new file + merged files' keys) | {i:.3f} |")
        print(f"| the new file alone | {o:.3f} |")
        print(f"| ratio | {i / o:.2f} |")


if __name__ == "__main__":
    main()
