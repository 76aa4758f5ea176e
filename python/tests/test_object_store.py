"""Sources in an S3-compatible object store, end to end: a real S3 server (moto's server mode)
on loopback, reached through a TCP proxy the tests can cut, against the same pipeline over
local files. Needs the `test` extra (`moto[server]`, `boto3`)."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import boto3
import pyarrow.parquet as pq
import pytest

from conftest import embeddings, run_cli

BUCKET = "lake"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """An S3 server on loopback for this module; its port."""
    port = free_port()
    server = pathlib.Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_bucket(Bucket=BUCKET)
    yield port, client
    proc.terminate()
    proc.wait(timeout=10)


class Proxy:
    """A loopback TCP proxy to `port` that cuts every connection, and refuses new ones for
    `outage` seconds, once `cut_after` bytes of responses have gone through."""

    def __init__(self, port: int, cut_after: int | None = None, outage: float = 3.0):
        self.target = port
        self.cut_after = cut_after
        self.outage = outage
        self.forwarded = 0
        self.cuts = 0
        self.connections_after_cut = 0
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.port = free_port()
        self.listener = self._listen()
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _listen(self) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        return s

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by a cut
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets += [client, upstream]
                if self.cuts:
                    self.connections_after_cut += 1
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, response: bool) -> None:
        try:
            while data := src.recv(1 << 14):
                dst.sendall(data)
                if response:
                    with self.lock:
                        self.forwarded += len(data)
                        due = self.cut_after is not None and self.forwarded >= self.cut_after
                        if due:
                            self.cut_after = None
                    if due:
                        threading.Thread(target=self.cut, daemon=True).start()
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self.lock:
            self.cuts += 1
            self.listener.close()
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets = []
        time.sleep(self.outage)
        self.listener = self._listen()
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()


def s3_env(port: int, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT=f"http://127.0.0.1:{port}",
        AWS_ALLOW_HTTP="true",
    )
    env.update(extra)
    return env


def sketchpipe(cli: list, env: dict, *args) -> subprocess.CompletedProcess:
    return run_cli(cli, *args, env=env, check=False)


PIPELINE = """
[pipeline]
output_dir = "out"

[sources.emb]
path = "{path}"
format = "parquet"

[stages.exact]
op = "top_eigenvector"
source = "emb"
columns = ["emb"]
algorithm = "exact"

[stages.shuffled]
op = "top_eigenvector"
source = "emb"
columns = ["emb"]
shuffle = true
seed = 3

"""
SAMPLE = """
[stages.sample]
op = "coordinated_sketch"
source = "emb"
key = "id"
columns = ["emb"]
method = "priority"
seed = 5
"""
PIPELINE += SAMPLE + "size = 200\n"


def tables(out: pathlib.Path) -> dict:
    """Every committed table under `out`, by stage/table, as Python values."""
    found = {}
    for f in sorted(out.glob("*/*.parquet")):
        found[f"{f.parent.name}/{f.stem}"] = pq.read_table(f).to_pylist()
    assert found, f"no tables under {out}"
    return found


def upload(client, files: list[pathlib.Path], prefix: str) -> None:
    for f in files:
        client.upload_file(str(f), BUCKET, f"{prefix}/{f.name}")


def write_parts(dir: pathlib.Path, parts: int, n: int, d: int) -> list[pathlib.Path]:
    """`parts` files of `n` rows each, with distinct ids across them (the sample's keys)."""
    dir.mkdir()
    files = [dir / f"part-{i}.parquet" for i in range(parts)]
    for i, f in enumerate(files):
        embeddings(f, n=n, d=d, seed=i, first_id=i * n)
    return files


def test_s3_sources_give_exactly_the_local_answer(cli, s3_server, tmp_path):
    port, client = s3_server
    files = write_parts(tmp_path / "local", parts=3, n=2000, d=8)
    upload(client, files, "same")
    answers = {}
    for name, path in [
        ("local", str(tmp_path / "local") + "/"),
        ("prefix", f"s3://{BUCKET}/same/"),
        ("glob", f"s3://{BUCKET}/same/part-*.parquet"),
    ]:
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        (d / "p.toml").write_text(PIPELINE.format(path=path))
        done = sketchpipe(cli, s3_env(port), "run", d / "p.toml")
        assert done.returncode == 0, done.stderr
        answers[name] = tables(d / "out")
    assert answers["prefix"] == answers["local"]
    assert answers["glob"] == answers["local"]
    # The stats name the rows of all three objects.
    assert answers["prefix"]["exact/stats"][0]["rows"] == 6000


def test_sql_reads_an_object_by_url(cli, s3_server, tmp_path):
    port, client = s3_server
    files = write_parts(tmp_path / "local", parts=1, n=500, d=4)
    upload(client, files, "sql")
    done = sketchpipe(
        cli,
        s3_env(port),
        "sql",
        "--format",
        "csv",
        f"SELECT count(*) AS n, sum(id) AS s FROM 's3://{BUCKET}/sql/part-0.parquet'",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["n,s", f"500,{sum(range(500))}"]


def test_incremental_runs_over_a_bucket_equal_one_full_run(cli, s3_server, tmp_path):
    port, client = s3_server
    files = write_parts(tmp_path / "local", parts=3, n=700, d=6)
    pipeline = (
        '[pipeline]\noutput_dir = "out"\n[sources.emb]\npath = "s3://{bucket}/{prefix}/"\n'
        'format = "parquet"\n' + SAMPLE + "size = 100\nincremental = {incremental}\n"
    )
    inc, full = tmp_path / "inc", tmp_path / "full"
    for d in (inc, full):
        d.mkdir()
    (inc / "p.toml").write_text(pipeline.format(bucket=BUCKET, prefix="inc", incremental="true"))
    (full / "p.toml").write_text(pipeline.format(bucket=BUCKET, prefix="full", incremental="false"))
    for f in files:
        upload(client, [f], "inc")
        done = sketchpipe(cli, s3_env(port), "run", inc / "p.toml")
        assert done.returncode == 0, done.stderr
    upload(client, files, "full")
    done = sketchpipe(cli, s3_env(port), "run", full / "p.toml")
    assert done.returncode == 0, done.stderr
    consumed = [
        row["file"] for row in pq.read_table(inc / "out/sample/manifest.parquet").to_pylist()
    ]
    assert consumed == [f"s3://{BUCKET}/inc/{f.name}" for f in files], consumed
    assert tables(inc / "out")["sample/sketch"] == tables(full / "out")["sample/sketch"]


def test_a_cut_connection_mid_run_is_retried_and_the_answer_unchanged(cli, s3_server, tmp_path):
    port, client = s3_server
    files = write_parts(tmp_path / "local", parts=6, n=20_000, d=32)  # ~30 MB of objects
    upload(client, files, "cut")
    local = tmp_path / "local_run"
    local.mkdir()
    (local / "p.toml").write_text(PIPELINE.format(path=str(tmp_path / "local") + "/"))
    done = sketchpipe(cli, s3_env(port), "run", local / "p.toml")
    assert done.returncode == 0, done.stderr

    proxy = Proxy(port, cut_after=8 << 20, outage=2.0)  # cut once 8 MB have been served
    remote = tmp_path / "remote_run"
    remote.mkdir()
    (remote / "p.toml").write_text(PIPELINE.format(path=f"s3://{BUCKET}/cut/"))
    done = sketchpipe(cli, s3_env(proxy.port), "run", remote / "p.toml")
    assert proxy.cuts == 1, "the proxy never cut: the run read less than expected"
    assert proxy.connections_after_cut > 0
    assert done.returncode == 0, done.stderr
    assert tables(remote / "out") == tables(local / "out")


def test_a_store_lost_mid_run_fails_clearly_and_changes_nothing(cli, s3_server, tmp_path):
    port, client = s3_server
    files = write_parts(tmp_path / "local", parts=2, n=20_000, d=32)
    upload(client, files, "gone")
    (tmp_path / "p.toml").write_text(PIPELINE.format(path=f"s3://{BUCKET}/gone/"))
    ok = sketchpipe(cli, s3_env(port), "run", tmp_path / "p.toml")
    assert ok.returncode == 0, ok.stderr
    before = {f: f.read_bytes() for f in sorted((tmp_path / "out").rglob("*")) if f.is_file()}

    # The store goes away 2 MB into the data, for longer than the retries last (about 20 s):
    # a clear error naming the source and the store, and the last outputs byte for byte.
    proxy = Proxy(port, cut_after=2 << 20, outage=600)
    started = time.time()
    done = sketchpipe(cli, s3_env(proxy.port), "run", tmp_path / "p.toml")
    assert proxy.cuts == 1
    assert done.returncode == 4, done.stderr  # I/O, as a missing local file
    assert "source `emb`" in done.stderr and f"s3://{BUCKET}/gone/" in done.stderr
    assert "after 10 retries" in done.stderr, done.stderr
    assert time.time() - started < 120
    after = {f: f.read_bytes() for f in sorted((tmp_path / "out").rglob("*")) if f.is_file()}
    assert after == before

    # A bucket that does not exist, and a prefix with nothing in it, are named.
    for path, says in [
        ("s3://no-such-bucket/x/", "NoSuchBucket"),
        (f"s3://{BUCKET}/void/", "No files"),
    ]:
        (tmp_path / "q.toml").write_text(PIPELINE.format(path=path).replace('"out"', '"out2"'))
        done = sketchpipe(cli, s3_env(port), "run", tmp_path / "q.toml")
        assert done.returncode == 4 and says in done.stderr and path in done.stderr, done.stderr
        assert not (tmp_path / "out2" / "exact").exists()


def test_an_object_store_output_dir_is_refused(cli, tmp_path):
    (tmp_path / "p.toml").write_text(
        PIPELINE.format(path="data.parquet").replace('"out"', f'"s3://{BUCKET}/out"')
    )
    done = sketchpipe(cli, dict(os.environ), "run", tmp_path / "p.toml")
    assert done.returncode == 2, done.stderr
    assert "output_dir" in done.stderr and "local directory" in done.stderr
