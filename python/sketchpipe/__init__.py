"""sketchpipe: streaming sketches over Arrow data, from Python.

The same engine as the ``sketchpipe`` command — its operators, SQL functions and pipeline
runner — over pyarrow tables, record batches and readers, polars frames, anything with
``__arrow_c_stream__``, and numpy arrays, without copying them on the way in.

* :func:`run` runs a pipeline file and returns what it wrote; :func:`sql` queries outputs.
* :class:`TopEigenvector`, :class:`PCA`, :class:`CoordinatedSketch` and
  :class:`PruneScores` are accumulators for out-of-core work: ``update(batch)`` any number
  of times, then ``result()`` — the tables the CLI writes for that op.
* :func:`el2n`, :func:`grand` and :func:`uniform_hash` are the SQL functions over arrays.
* :func:`register` adds every sketchpipe SQL function to a ``datafusion.SessionContext``.

Errors are :class:`SketchpipeError` subclasses carrying the CLI's messages.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import _native
from ._native import (
    BusyError,
    ConfigError,
    InputError,
    InternalError,
    SketchpipeError,
    SketchpipeIOError,
)

__version__ = _native.__version__

#: Other spellings of the file-error class (``except sketchpipe.IOError``); not in ``__all__``,
#: so a star import does not shadow the builtin.
IOError = SketchpipeIOError  # noqa: A001
IoError = SketchpipeIOError

__all__ = [
    "run",
    "sql",
    "el2n",
    "grand",
    "uniform_hash",
    "register",
    "TopEigenvector",
    "PCA",
    "CoordinatedSketch",
    "PruneScores",
    "SketchpipeError",
    "ConfigError",
    "InputError",
    "SketchpipeIOError",
    "BusyError",
    "InternalError",
    "DATAFUSION_MAJOR",
]

#: The DataFusion major version this build is made with; :func:`register` needs the
#: ``datafusion`` Python package of the same major version.
DATAFUSION_MAJOR: int = _native.ffi_version()

PathLike = Union[str, "os.PathLike[str]"]
Tables = dict[str, pa.Table]


def _tables(streams: Iterable[tuple]) -> Tables:
    return {name: pa.table(stream) for name, stream in streams}


def _toml(value: Any) -> str:
    """A Python value as a TOML value for ``--set``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise ConfigError(f"set: cannot write {type(value).__name__} {value!r} as a TOML value")


def run(
    pipeline: PathLike,
    output_dir: PathLike | None = None,
    run_date: Any | None = None,
    set: Mapping[str, Any] | None = None,  # noqa: A002 - the CLI's --set
    quiet: bool = False,
) -> dict[str, Tables]:
    """Run a pipeline file, as ``sketchpipe run`` does, and return what it wrote.

    Args:
        pipeline: the pipeline TOML file.
        output_dir: overrides ``[pipeline] output_dir``.
        run_date: writes ``STAGE/date=YYYY-MM-DD/`` partitions (a ``datetime.date`` or a
            ``"YYYY-MM-DD"`` string).
        set: overrides, ``{"STAGE.KEY": value}`` (as ``--set STAGE.KEY=VALUE``).
        quiet: no progress on stderr (progress is shown on a terminal otherwise).

    Returns:
        ``{stage: {table: pyarrow.Table}}`` of the tables written.

    Ctrl-C raises ``KeyboardInterrupt`` after the run has removed its temporary files; the
    previous outputs are left as they were.

    Example:
        >>> out = sketchpipe.run("pipelines/demo.toml", quiet=True)  # doctest: +SKIP
        >>> out["top"]["stats"].column("eigenvalue")  # doctest: +SKIP
    """
    overrides = [f"{k}={_toml(v)}" for k, v in (set or {}).items()]
    date = None if run_date is None else str(run_date)
    stages = _native.run(
        os.fspath(pipeline),
        None if output_dir is None else os.fspath(output_dir),
        date,
        overrides,
        quiet,
    )
    return {
        name: {t: pq.read_table(os.path.join(d, f"{t}.parquet")) for t in tables}
        for name, d, tables in stages
    }


def sql(
    query: str,
    pipeline: PathLike | None = None,
    dir: PathLike | None = None,  # noqa: A002
) -> pa.Table:
    """Run an SQL query, as ``sketchpipe sql`` does, and return its result.

    Every stage directory of the output directory (``dir``, or the one ``pipeline`` names)
    is a schema, each of its tables a table (``SELECT * FROM top.vector``); quoted file
    paths are tables too, and every sketchpipe SQL function is available.

    Example:
        >>> t = sketchpipe.sql("SELECT uniform_hash(7, 42) AS u")  # doctest: +SKIP
        >>> t.column("u")[0].as_py()  # doctest: +SKIP
    """
    if dir is None and pipeline is not None:
        dir = _native.pipeline_output_dir(os.fspath(pipeline))
    return pa.table(_native.sql(query, None if dir is None else os.fspath(dir)))


# ---- arrays in ------------------------------------------------------------------------


def _rows_array(a: Any, what: str) -> Any:
    """A 2-D numpy array as a FixedSizeList array over the same memory; Arrow data as is."""
    if isinstance(a, np.ndarray):
        if a.ndim != 2:
            raise InputError(f"{what}: expected a 2-D array (rows × values), got shape {a.shape}")
        if a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float64)
        a = np.ascontiguousarray(a)
        return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])
    return a


def _column_array(a: Any, what: str) -> Any:
    if isinstance(a, np.ndarray):
        if a.ndim != 1:
            raise InputError(f"{what}: expected a 1-D array, got shape {a.shape}")
        return pa.array(np.ascontiguousarray(a))
    if isinstance(a, (list, tuple)):
        return pa.array(a)
    return a


def _out(result: Any, numpy: bool) -> Any:
    array = pa.array(result)
    return array.to_numpy(zero_copy_only=False) if numpy else array


def el2n(logits: Any, labels: Any, *, probs: bool = False) -> Any:
    """EL2N scores ``‖softmax(logits) − onehot(label)‖₂`` (Paul, Ganguli, Dziugaite,
    arXiv:2107.07075), the ``el2n`` SQL function over whole arrays.

    Args:
        logits: ``(n, k)`` float32/float64 numpy array, or an Arrow list column.
        labels: ``n`` integer classes (or an Arrow list column of label distributions).
        probs: the first argument holds probabilities, not logits (``el2n_probs``).

    Returns:
        float64 scores: a numpy array for numpy inputs, else a pyarrow array. The work runs
        on every core with the GIL released.

    Example:
        >>> sketchpipe.el2n(np.array([[2.0, 0.0]]), np.array([0]))  # doctest: +SKIP
        array([0.16853...])
    """
    numpy = isinstance(logits, np.ndarray)
    name = "el2n_probs" if probs else "el2n"
    args = [_rows_array(logits, "logits"), _column_array(labels, "labels")]
    return _out(_native.score(name, args), numpy)


def grand(logits: Any, labels: Any, embedding: Any, *, probs: bool = False) -> Any:
    """Last-layer GraNd scores ``EL2N · sqrt(‖embedding‖² + 1)``, the ``grand`` SQL function
    over whole arrays; ``embedding`` is ``(n, h)`` (numpy) or an Arrow list column.

    Example:
        >>> sketchpipe.grand(logits, labels, hidden)  # doctest: +SKIP
    """
    numpy = isinstance(logits, np.ndarray)
    name = "grand_probs" if probs else "grand"
    args = [
        _rows_array(logits, "logits"),
        _column_array(labels, "labels"),
        _rows_array(embedding, "embedding"),
    ]
    return _out(_native.score(name, args), numpy)


def uniform_hash(keys: Any, seed: int) -> Any:
    """The shared key hash ``u(key) ∈ (0, 1)`` every coordinated sketch is built on (the
    ``uniform_hash`` SQL function): integer or string keys; numpy in, numpy out.

    Example:
        >>> sketchpipe.uniform_hash(np.arange(3), seed=42)  # doctest: +SKIP
    """
    numpy = isinstance(keys, np.ndarray)
    return _out(_native.uniform_hash(_column_array(keys, "keys"), seed), numpy)


# ---- SQL functions in a datafusion SessionContext --------------------------------------


def register(ctx: Any) -> None:
    """Register every sketchpipe SQL function in a ``datafusion.SessionContext``.

    Needs the ``datafusion`` Python package of DataFusion major version
    :data:`DATAFUSION_MAJOR` (``pip install "datafusion>=55,<56"``); any other version is
    refused with an error before anything crosses the FFI boundary.

    Example:
        >>> from datafusion import SessionContext  # doctest: +SKIP
        >>> ctx = SessionContext(); sketchpipe.register(ctx)  # doctest: +SKIP
        >>> ctx.sql("SELECT uniform_hash(7, 42)").to_pylist()  # doctest: +SKIP
    """
    try:
        import datafusion
    except ImportError as e:
        raise ConfigError(
            "register: the datafusion package is not installed "
            f'(pip install "datafusion>={DATAFUSION_MAJOR},<{DATAFUSION_MAJOR + 1}")'
        ) from e
    version = getattr(datafusion, "__version__", "unknown")
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        major = -1
    if major != DATAFUSION_MAJOR:
        raise ConfigError(
            f"register: datafusion {version} is installed; this sketchpipe build speaks "
            f"DataFusion {DATAFUSION_MAJOR}'s FFI and needs datafusion "
            f'{DATAFUSION_MAJOR}.x (pip install "datafusion>={DATAFUSION_MAJOR},'
            f'<{DATAFUSION_MAJOR + 1}")'
        )
    if not isinstance(ctx, datafusion.SessionContext):
        raise ConfigError(
            f"register: expected a datafusion.SessionContext, got {type(ctx).__name__}"
        )
    scalar, aggregate = _native.functions()
    for f in scalar:
        ctx.register_udf(datafusion.ScalarUDF.from_pycapsule(f))
    for f in aggregate:
        ctx.register_udaf(datafusion.AggregateUDF.from_pycapsule(f))


# ---- streaming accumulators -------------------------------------------------------------


def _as_arrow(data: Any, what: str) -> Any:
    """``data`` as something with ``__arrow_c_stream__``/``__arrow_c_array__``."""
    if isinstance(data, np.ndarray):
        return pa.table({"values": _rows_array(data, what)})
    if hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__"):
        return data
    raise InputError(
        f"{what}: expected a pyarrow Table, RecordBatch or RecordBatchReader, a polars "
        f"DataFrame, a 2-D numpy array, or anything with __arrow_c_stream__; "
        f"got {type(data).__name__}"
    )


def _schema_names(data: Any) -> Sequence[str] | None:
    schema = getattr(data, "schema", None)
    if isinstance(schema, pa.Schema):
        return schema.names
    names = getattr(data, "columns", None)  # polars
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    return None


class _Accumulator:
    """One stage of an op fed batch by batch (see the subclasses)."""

    _op: str = ""
    #: Whether the op reads ``columns`` (defaulted from the first batch when not given);
    #: an op that names its columns by other keys is made at once.
    _reads_columns: bool = True

    def __init__(
        self, keys: dict[str, Any], rows: int | None = None, order_randomised: bool = False
    ) -> None:
        self._keys = {k: v for k, v in keys.items() if v is not None}
        self._rows = rows
        self._order_randomised = order_randomised
        self._stage: Any | None = None
        if "columns" in self._keys or not self._reads_columns:
            self._stage = self._make(self._keys)

    def _make(self, keys: dict[str, Any]) -> Any:
        if isinstance(keys.get("columns"), str):
            keys = dict(keys, columns=[keys["columns"]])
        return _native.Stage(
            self._op, type(self).__name__, keys, self._rows, self._order_randomised
        )

    def _default_columns(self, names: Sequence[str]) -> list:
        if len(names) != 1:
            raise ConfigError(
                f"{type(self).__name__}: columns= not given and the data has "
                f"{len(names)} columns ({', '.join(names)}); name the ones to read"
            )
        return list(names)

    def update(self, data: Any) -> _Accumulator:
        """Feed rows: a pyarrow Table/RecordBatch/RecordBatchReader, a polars DataFrame,
        anything with ``__arrow_c_stream__``, or a 2-D numpy array (its rows). Returns self."""
        data = _as_arrow(data, f"{type(self).__name__}.update")
        if self._stage is None:
            names = _schema_names(data)
            if names is None:  # a bare stream: its schema comes first, its rows stay unread
                data = pa.RecordBatchReader.from_stream(data)
                names = data.schema.names
            self._stage = self._make(dict(self._keys, columns=self._default_columns(names)))
        self._stage.update(data)
        return self

    def result(self) -> Tables:
        """The tables the CLI writes for this op, ``{table: pyarrow.Table}``."""
        return _tables(self._made().result())

    def _made(self) -> Any:
        if self._stage is None:
            raise InputError(f"{type(self).__name__}: no rows were given (call update first)")
        return self._stage

    def to_bytes(self) -> bytes:
        """The finished state as one value (the ``state`` table an incremental stage writes,
        with the op's keys and input schema): for ``from_bytes`` and ``merge`` later.
        Algorithms whose state merges only (``exact``, ``frequent-directions``)."""
        return bytes(self._made().to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> _Accumulator:
        """The finished accumulator ``to_bytes`` wrote."""
        return cls._of(_native.Stage.from_bytes(cls.__name__, bytes(data)))

    @classmethod
    def _of(cls, stage: Any) -> _Accumulator:
        out = cls.__new__(cls)
        out._keys, out._rows, out._order_randomised = {}, None, False
        out._stage = stage
        return out

    def merge(self, other: _Accumulator) -> _Accumulator:
        """This accumulator's rows and ``other``'s (disjoint rows, the same keys) as one
        finished accumulator, as partitions' states merge (``exact`` to rounding, Frequent
        Directions within its bound). Both are finished first."""
        if type(other) is not type(self):
            raise ConfigError(
                f"{type(self).__name__}.merge: expected a {type(self).__name__}, "
                f"got {type(other).__name__}"
            )
        return type(self)._of(self._made().merge(other._made()))


class TopEigenvector(_Accumulator):
    """The top eigenvector of ``AᵀA`` over rows fed batch by batch (op ``top_eigenvector``).

    Args:
        columns: the numeric columns of a row, or one list column (default: the data's only
            column; a 2-D numpy array's rows).
        algorithm: ``"random-order"`` (Kacham–Woodruff; needs ``rows``), ``"oja"``,
            ``"exact"`` or ``"frequent-directions"``.
        rows: the number of rows that will be fed in all (``random-order`` needs it up front,
            as the CLI reads it from the files' footers).
        order_randomised: the rows come in a uniformly random order (what ``random-order``'s
            guarantee assumes; recorded in ``stats.order_randomised``).
        seed, ell, and the op's other keys: as in a pipeline file (``docs/reference.md``).

    Example:
        >>> te = sketchpipe.TopEigenvector(algorithm="exact")  # doctest: +SKIP
        >>> for batch in pq.ParquetFile("emb.parquet").iter_batches():  # doctest: +SKIP
        ...     te.update(batch)
        >>> te.vector  # doctest: +SKIP
    """

    _op = "top_eigenvector"

    def __init__(
        self,
        columns: str | Sequence[str] | None = None,
        *,
        algorithm: str | None = None,
        rows: int | None = None,
        order_randomised: bool = False,
        seed: int | None = None,
        **keys: Any,
    ) -> None:
        super().__init__(
            dict(keys, columns=columns, algorithm=algorithm, seed=seed),
            rows=rows,
            order_randomised=order_randomised,
        )

    @property
    def vector(self) -> np.ndarray:
        """The estimated top eigenvector (unit norm), as a numpy array."""
        t = self.result()["vector"]
        return np.asarray(t.column("value").to_numpy())

    @property
    def eigenvalue(self) -> float:
        """The estimated top eigenvalue of ``AᵀA``."""
        return float(self.result()["stats"].column("eigenvalue")[0].as_py())


class PCA(_Accumulator):
    """Principal components over rows fed batch by batch (op ``pca``): centred by default,
    optionally scaled (correlation PCA), top ``components``; ``algorithm`` ``"exact"``
    (default) or ``"frequent-directions"``.

    Example:
        >>> p = sketchpipe.PCA(components=3).update(X)  # doctest: +SKIP
        >>> p.result()["components"]  # doctest: +SKIP
    """

    _op = "pca"

    def __init__(
        self,
        columns: str | Sequence[str] | None = None,
        *,
        components: int | None = None,
        algorithm: str | None = None,
        center: bool | None = None,
        scale: bool | None = None,
        **keys: Any,
    ) -> None:
        super().__init__(
            dict(
                keys,
                columns=columns,
                components=components,
                algorithm=algorithm,
                center=center,
                scale=scale,
            )
        )


class CoordinatedSketch(_Accumulator):
    """A coordinated sampling (or linear) sketch of a table's rows by a join key (op
    ``coordinated_sketch``; Daliri, Freire, Li, Musco, arXiv:2501.17836). Two sketches made
    with the same ``seed`` give ``AᵀB`` over the join of their tables without the join.

    Args:
        key: the join key column (integers or strings; unique per table).
        columns: the numeric columns, or one list column (default: every column but the key).
        method: ``"priority"`` (default), ``"threshold"``, ``"exact"``, ``"jl"`` or
            ``"countsketch"``.
        size: rows kept (sketch rows for linear methods).
        seed: the shared seed (sketches to be multiplied must share it).

    After ``result()`` (or ``to_bytes``/``merge``/``product``) the sketch is final.

    Example:
        >>> a = sketchpipe.CoordinatedSketch(key="id", size=500).update(left)  # doctest: +SKIP
        >>> b = sketchpipe.CoordinatedSketch(key="id", size=500).update(right)  # doctest: +SKIP
        >>> a.product(b)["product"]  # doctest: +SKIP
    """

    _op = "coordinated_sketch"
    #: The finished sketch (from ``to_bytes``, ``merge``, ``product``, … or ``from_bytes``).
    _sketch: Any | None = None

    def __init__(
        self,
        key: str,
        columns: str | Sequence[str] | None = None,
        *,
        method: str | None = None,
        size: int | None = None,
        seed: int | None = None,
        **keys: Any,
    ) -> None:
        if "table_column" in keys:
            raise ConfigError(
                "CoordinatedSketch sketches one table; a corpus (table_column) and its search run "
                "as pipeline stages: sketchpipe.run() with a coordinated_sketch stage with "
                "table_column and a sketch_search stage"
            )
        super().__init__(dict(keys, key=key, columns=columns, method=method, size=size, seed=seed))

    def _default_columns(self, names: Sequence[str]) -> list:
        rest = [n for n in names if n != self._keys["key"]]
        if not rest:
            raise ConfigError(
                f"CoordinatedSketch: the data has no column but the key "
                f"`{self._keys['key']}`; name the value columns with columns="
            )
        return rest

    def update(self, data: Any) -> CoordinatedSketch:
        if self._sketch is not None and self._stage is None:
            raise ConfigError(
                "CoordinatedSketch: this sketch was made by from_bytes or merge; sketch new rows "
                "in a new CoordinatedSketch and merge it in"
            )
        super().update(data)
        return self

    def _final(self) -> Any:
        if self._sketch is None:
            if self._stage is None:
                raise InputError("CoordinatedSketch: no rows were given (call update first)")
            self._sketch = _native.Sketch.of_stage(self._stage)
        return self._sketch

    def result(self) -> Tables:
        """The ``sketch`` and ``stats`` tables, as the CLI writes them."""
        if self._stage is not None:
            return super().result()
        return _tables(self._final().tables())

    def to_bytes(self) -> bytes:
        """The sketch as one value: the format of the ``sketch`` table (and of the SQL
        aggregates' values), carrying its method, seed and hash version."""
        return bytes(self._final().to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> CoordinatedSketch:
        """The sketch ``to_bytes`` (or a ``coordinated_sketch`` SQL aggregate) made."""
        return cls._of_sketch(_native.Sketch.from_bytes(bytes(data)))

    @classmethod
    def _of_sketch(cls, sketch: Any) -> CoordinatedSketch:
        out = cls._of(None)
        out._sketch = sketch
        return out

    def merge(self, other: CoordinatedSketch) -> CoordinatedSketch:
        """This sketch and ``other`` (of a disjoint set of rows, same method and seed) as one
        sketch, as if built in one pass; returns a new sketch."""
        return CoordinatedSketch._of_sketch(self._final().merge(other._final()))

    def product(self, other: CoordinatedSketch) -> Tables:
        """``AᵀB`` over the join of this sketch's table (``A``) and ``other``'s (``B``): the
        ``product`` and ``stats`` tables of op ``sketch_product``."""
        return _tables(self._final().product(other._final()))

    def regression(
        self, other: CoordinatedSketch, target: str | None = None, **keys: Any
    ) -> Tables:
        """Least squares of ``other``'s ``target`` on this sketch's columns over the join
        (op ``sketch_regression``; ``lambda_`` or ``**{"lambda": x}`` for ridge)."""
        if "lambda_" in keys:
            keys["lambda"] = keys.pop("lambda_")
        return _tables(self._final().regression(other._final(), dict(keys, target=target)))


class PruneScores(_Accumulator):
    """EL2N / GraNd data-pruning scores averaged by example id over runs, with a rank and a
    keep mask (op ``prune_scores``; Paul, Ganguli, Dziugaite, arXiv:2107.07075).

    Feed it the logged model outputs of every run — from a training loop, epoch by epoch,
    or from files — and ask for the result once: the rows are spooled to a temporary Parquet
    file and the op runs over them as the CLI runs over a file.

    Args:
        id: the example id column.
        label: the label column (an integer class, or a list: a label distribution).
        logits: the logits column (a list of floats) — or ``probs``: logged probabilities.
        run: the run (seed) column; scores are averaged over runs by id.
        embedding: penultimate features, for last-layer GraNd (``score="grand"``).
        score, keep_fraction, keep_count, mode, offset, missing_runs, classes, seed: as the
            op's keys in a pipeline file (``docs/reference.md``).

    Example:
        >>> ps = sketchpipe.PruneScores(  # doctest: +SKIP
        ...     id="id", label="y", logits="z", run="seed")
        >>> for epoch_batch in logged:  # doctest: +SKIP
        ...     ps.update(epoch_batch)
        >>> ps.result()["scores"].sort_by("rank")  # doctest: +SKIP
    """

    _op = "prune_scores"
    _reads_columns = False

    def __init__(
        self,
        id: str,
        *,
        label: str | None = None,  # noqa: A002 - the op's key
        logits: str | None = None,
        probs: str | None = None,
        run: str | None = None,
        embedding: str | None = None,
        **keys: Any,
    ) -> None:
        super().__init__(
            dict(keys, id=id, label=label, logits=logits, probs=probs, run=run, embedding=embedding)
        )
