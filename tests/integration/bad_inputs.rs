//! Every bad input gives a non-zero exit, a message naming the problem (file, stage, key,
//! column, row), and no output at all.

use std::path::Path;
use std::sync::Arc;

use crate::common::*;
use datafusion::arrow::array::{ArrayRef, ListArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::Float64Type;
use tempfile::TempDir;

/// Writes `data.parquet` (a few good rows, `emb` list + `name` string) into `dir`.
fn good_data(dir: &Path) {
    let known = KnownSpectrum::new(3, 5, 1);
    let b = known.batch(0..known.n());
    let names: ArrayRef = Arc::new(StringArray::from(vec!["a"; known.n()]));
    let b = RecordBatch::try_from_iter(
        b.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .zip(b.columns().iter().cloned())
            .chain([("name".to_string(), names)]),
    )
    .unwrap();
    write_parquet(&dir.join("data.parquet"), &b);
}

fn list_data(dir: &Path, rows: Vec<Option<Vec<Option<f64>>>>) {
    let emb: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(rows));
    let b = RecordBatch::try_from_iter([("emb", emb)]).unwrap();
    write_parquet(&dir.join("data.parquet"), &b);
}

const HEAD: &str = "[pipeline]\noutput_dir = \"out\"\n[sources.src]\npath = \"data.parquet\"\n";
const STAGE: &str = "[stages.top]\nop = \"top_eigenvector\"\nsource = \"src\"\ncolumns = [\"emb\"]\nalgorithm = \"exact\"\n";

/// A mistake in the pipeline file (or in how it meets the data's schema): exit code 2.
fn fails(setup: impl Fn(&Path), text: &str, expected: &[&str]) {
    fails_with(2, setup, text, expected)
}

/// The data does not fit (NaN, ragged rows, no rows, over a memory budget), found while
/// reading: exit code 3.
fn fails_on_data(setup: impl Fn(&Path), text: &str, expected: &[&str]) {
    fails_with(3, setup, text, expected)
}

/// Runs the pipeline `text` after `setup`, and checks it fails with the documented exit
/// `code`, every `expected` fragment in its message, and nothing under the output directory
/// but the lock file (which records who ran last, never data). A `top_eigenvector` stage's
/// bad input is tried as a `pca` stage too (it reads rows the same way): refused alike.
fn fails_with(code: i32, setup: impl Fn(&Path), text: &str, expected: &[&str]) {
    fails_once(code, &setup, text, expected);
    let op = "op = \"top_eigenvector\"";
    if text.contains(op) && !text.contains("verify") {
        // `pca` defaults to exact, `top_eigenvector` to random-order.
        let pca = match text.contains("algorithm") {
            true => "op = \"pca\"",
            false => "op = \"pca\"\nalgorithm = \"random-order\"",
        };
        fails_once(code, &setup, &text.replace(op, pca), expected);
    }
}

fn fails_once(code: i32, setup: &impl Fn(&Path), text: &str, expected: &[&str]) {
    let tmp = TempDir::new().unwrap();
    setup(tmp.path());
    let file = write_pipeline(tmp.path(), text);
    let out = sketchpipe(&["run", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr:\n{err}"
    );
    assert_eq!(out.status.code(), Some(code), "{err}");
    for e in expected {
        assert!(err.contains(e), "message lacks `{e}`:\n{err}");
    }
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: "),
        "the error is not the last line:\n{err}"
    );
    let left = outputs_under(&tmp.path().join("out"));
    assert!(left.is_empty(), "partial output left behind: {left:?}");
}

#[test]
fn missing_file() {
    fails_with(
        4,
        |_| {},
        &format!("{HEAD}{STAGE}"),
        &["data.parquet", "does not exist", "[sources.src]"],
    );
}

#[test]
fn unknown_column() {
    fails(
        good_data,
        &format!("{HEAD}{}", STAGE.replace("[\"emb\"]", "[\"embedding\"]")),
        &[
            "pipeline.toml",
            "[stages.top]",
            "`columns`",
            "unknown column `embedding`",
            "emb, name",
        ],
    );
}

#[test]
fn string_column_where_numbers_are_expected() {
    fails(
        good_data,
        &format!("{HEAD}{}", STAGE.replace("[\"emb\"]", "[\"name\"]")),
        &["[stages.top]", "`name` has type Utf8", "expected numbers"],
    );
}

#[test]
fn ragged_list() {
    fails_on_data(
        |d| {
            list_data(
                d,
                vec![
                    Some(vec![Some(1.0), Some(2.0)]),
                    Some(vec![Some(1.0), Some(2.0), Some(3.0)]),
                ],
            )
        },
        &format!("{HEAD}{STAGE}"),
        &[
            "stage `top`",
            "column `emb`",
            "row 1",
            "ragged",
            "on_invalid",
        ],
    );
}

#[test]
fn nan_value() {
    fails_on_data(
        |d| {
            list_data(
                d,
                vec![
                    Some(vec![Some(1.0), Some(2.0)]),
                    Some(vec![Some(f64::NAN), Some(2.0)]),
                ],
            )
        },
        &format!("{HEAD}{STAGE}"),
        &["stage `top`", "column `emb`", "row 1", "NaN"],
    );
}

#[test]
fn a_failure_after_the_shuffle_spill_leaves_no_spill_files() {
    // The spill pass succeeds; the shuffled read-back meets the NaN. `fails` checks that
    // nothing at all is left under the output directory (spill files included).
    let rows: Vec<Option<Vec<Option<f64>>>> = (0..5000)
        .map(|i| {
            Some(vec![
                Some(if i == 4321 { f64::NAN } else { i as f64 }),
                Some(1.0),
            ])
        })
        .collect();
    // (top_eigenvector only: a pca stage takes its mean from the spill pass, which meets the
    // NaN there — tested as the NaN case below.)
    fails_once(
        3,
        &|d| list_data(d, rows.clone()),
        &format!(
            "{HEAD}{}shuffle = true\nshuffle_memory = \"1MiB\"\n",
            STAGE.replace("algorithm = \"exact\"\n", "")
        ),
        &["stage `top`", "NaN", "shuffled order"],
    );
}

#[test]
fn empty_table() {
    fails_on_data(
        |d| list_data(d, vec![]),
        &format!("{HEAD}{STAGE}"),
        &["stage `top`", "no rows"],
    );
}

#[test]
fn every_row_invalid_under_skip() {
    fails_on_data(
        |d| list_data(d, vec![None, None]),
        &format!("{HEAD}{STAGE}on_invalid = \"skip\"\n"),
        &["all 2 input rows were invalid"],
    );
}

#[test]
fn unknown_toml_key() {
    fails(
        good_data,
        &format!("{HEAD}{STAGE}algoritm = \"exact\"\n"),
        &[
            "pipeline.toml",
            "[stages.top]",
            "`algoritm`",
            "unknown key",
            "algorithm",
        ],
    );
}

#[test]
fn unknown_key_in_a_source_and_in_pipeline() {
    fails(
        good_data,
        &format!("{HEAD}compression = 1\n{STAGE}"),
        &["[sources.src]", "`compression`", "unknown key"],
    );
    fails(
        good_data,
        &format!(
            "{}{STAGE}",
            HEAD.replace("[pipeline]\n", "[pipeline]\nouput = 1\n")
        ),
        &["[pipeline]", "`ouput`"],
    );
}

#[test]
fn stage_whose_source_does_not_exist() {
    fails(
        good_data,
        &format!(
            "{HEAD}{}",
            STAGE.replace("source = \"src\"", "source = \"nope\"")
        ),
        &[
            "[stages.top]",
            "`source`",
            "no source named `nope`",
            "`src`",
        ],
    );
}

#[test]
fn dependency_cycle() {
    let text = format!(
        "{HEAD}[stages.a]\nop = \"top_eigenvector\"\nsource = \"b.vector\"\ncolumns = [\"value\"]\n\
         algorithm = \"exact\"\n[stages.b]\nop = \"top_eigenvector\"\nsource = \"a.vector\"\n\
         columns = [\"value\"]\nalgorithm = \"exact\"\n"
    );
    // (Through `b.vector`: a table only top_eigenvector writes.)
    fails_once(2, &good_data, &text, &["dependency cycle", "a → b → a"]);
}

#[test]
fn bad_values_and_unknown_ops() {
    fails(
        good_data,
        &format!("{HEAD}{}", STAGE.replace("exact", "fast")),
        &["`algorithm`", "`fast` is not one of", "exact"],
    );
    fails(
        good_data,
        &format!(
            "{HEAD}{}",
            STAGE.replace("top_eigenvector", "principal_components")
        ),
        &["`op`", "unknown op `principal_components`", "pca"],
    );
    fails(
        good_data,
        &format!("{HEAD}{STAGE}seed = -1\n"),
        &["`seed`", "non-negative integer"],
    );
    fails(
        good_data,
        &format!("{HEAD}{STAGE}shuffle = \"yes\"\n"),
        &["`shuffle`", "true or false"],
    );
    fails(
        good_data,
        &format!("{HEAD}{STAGE}\n[stages.top2\n"),
        &["pipeline.toml", "invalid TOML"],
    );
    fails(
        good_data,
        &format!("{HEAD}[stages.Top]\nop = \"top_eigenvector\"\n"),
        &["`Top`", "lower-case"],
    );
    fails(good_data, HEAD, &["no [stages.NAME] sections"]);
}

#[test]
fn algorithm_specific_keys_are_checked() {
    let ro = STAGE.replace("algorithm = \"exact\"\n", "");
    for (stage, extra, expected) in [
        (
            STAGE.to_string(),
            "heavy_factor = 2.0",
            "only applies to algorithm = \"random-order\"",
        ),
        (
            STAGE.to_string(),
            "frobenius = \"exact\"",
            "only applies to algorithm = \"random-order\" or \"oja\"",
        ),
        (ro.clone(), "heavy_factor = -1", "must be positive"),
        (ro.clone(), "power_steps = 0", "at least 1"),
        (ro.clone(), "block_width = 0", "at least 1"),
        (
            ro.clone(),
            "frobenius = \"exact\"\nprefix_rows = 100",
            "with frobenius = \"prefix\"",
        ),
        (
            ro.clone(),
            "frobenius = \"approximate\"",
            "is not one of: prefix, exact",
        ),
        (
            ro.clone(),
            "shuffle_memory = \"1GiB\"",
            "only applies with shuffle = true",
        ),
        (
            ro.clone(),
            "shuffle = true\nshuffle_memory = \"lots\"",
            "is not a size",
        ),
        (
            ro.clone(),
            "shuffle = true\nshuffle_memory = \"10KiB\"",
            "at least 1MiB",
        ),
        (ro.clone(), "heavy_memory = true", "expected a size"),
    ] {
        fails(
            good_data,
            &format!("{HEAD}{stage}{extra}\n"),
            &["[stages.top]", expected],
        );
    }
}

#[test]
fn exceeding_the_heavy_row_budget_is_a_clear_error() {
    // The 20 heavy rows of this table (‖a‖² = 800 over τ ≈ 440) need 2.5 KiB; 1 KiB is allowed.
    fails_on_data(
        |dir| {
            assert_ok(&sketchpipe(&[
                "-q",
                "generate",
                "heavy-vs-bulk",
                "--rows",
                "2000",
                "--dim",
                "16",
                "--heavy-rows",
                "20",
                "--out",
                dir.join("data.parquet").to_str().unwrap(),
            ]))
        },
        &format!(
            "{HEAD}{}heavy_memory = 1024\n",
            STAGE.replace("algorithm = \"exact\"\n", "")
        ),
        &[
            "stage `top`",
            "heavy rows",
            "heavy_memory = 1024",
            "frequent-directions",
        ],
    );
}

#[test]
fn bad_set_override() {
    let tmp = TempDir::new().unwrap();
    good_data(tmp.path());
    let file = write_pipeline(tmp.path(), &format!("{HEAD}{STAGE}"));
    let out = sketchpipe(&["run", file.to_str().unwrap(), "--set", "nope.seed=1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no stage `nope`"), "{}", stderr(&out));
    let out = sketchpipe(&["run", file.to_str().unwrap(), "--set", "top.colour=1"]);
    assert!(stderr(&out).contains("`colour`") && stderr(&out).contains("unknown key"));
}

#[test]
fn sql_errors_name_the_tables() {
    let tmp = TempDir::new().unwrap();
    good_data(tmp.path());
    let file = write_pipeline(tmp.path(), &format!("{HEAD}{STAGE}"));
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap(), "--quiet"]));
    let out = sketchpipe(&[
        "sql",
        "--pipeline",
        file.to_str().unwrap(),
        "SELECT * FROM top.nope",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("top.stats") && stderr(&out).contains("top.vector"),
        "{}",
        stderr(&out)
    );
    let out = sketchpipe(&[
        "sql",
        "--dir",
        tmp.path().join("nowhere").to_str().unwrap(),
        "SELECT 1",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nowhere"));
}

#[test]
fn sql_formats() {
    let tmp = TempDir::new().unwrap();
    good_data(tmp.path());
    let file = write_pipeline(tmp.path(), &format!("{HEAD}{STAGE}"));
    assert_ok(&sketchpipe(&["run", file.to_str().unwrap(), "--quiet"]));
    let dir = tmp.path().join("out");
    let q = "SELECT component, value FROM top.vector ORDER BY component";
    let csv = sketchpipe(&["sql", "--dir", dir.to_str().unwrap(), "--format", "csv", q]);
    assert_ok(&csv);
    let lines: Vec<String> = stdout(&csv).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "component,value");
    assert_eq!(lines.len(), 4);
    let json = sketchpipe(&["sql", "--dir", dir.to_str().unwrap(), "--format", "json", q]);
    assert_ok(&json);
    let text = stdout(&json);
    assert!(
        text.trim_start().starts_with("[{\"component\":0,"),
        "{text}"
    );
    let table = sketchpipe(&[
        "sql",
        "--dir",
        dir.to_str().unwrap(),
        "SELECT algorithm, rows FROM top.stats",
    ]);
    assert_ok(&table);
    assert!(
        stdout(&table).contains("| exact     | 15   |"),
        "{}",
        stdout(&table)
    );
}

#[test]
fn ell_only_applies_to_frequent_directions() {
    fails(
        good_data,
        &format!("{HEAD}{STAGE}ell = 8\n"),
        &[
            "`ell`",
            "only applies to algorithm = \"frequent-directions\"",
        ],
    );
    fails(
        good_data,
        &format!(
            "{HEAD}{}ell = 1\n",
            STAGE.replace("exact", "frequent-directions")
        ),
        &["`ell`", "at least 2"],
    );
}

/// `pca`'s own keys: each bad value a clear error naming the key, nothing written.
#[test]
fn pca_keys_and_shapes() {
    let pca = STAGE.replace("top_eigenvector", "pca");
    fails(
        good_data,
        &format!("{HEAD}{pca}components = 0\n"),
        &["`components`", "at least 1"],
    );
    fails(
        good_data,
        &format!("{HEAD}{pca}components = 4\n"),
        &["stage `top`", "components = 4", "dimension 3"],
    );
    fails(
        good_data,
        &format!("{HEAD}{pca}scale = true\ncenter = false\n"),
        &["`scale`", "needs center = true"],
    );
    fails(
        good_data,
        &format!(
            "{HEAD}{}components = 2\n",
            pca.replace("exact", "random-order")
        ),
        &[
            "`components`",
            "top component only",
            "\"exact\" or \"frequent-directions\"",
        ],
    );
    fails(
        good_data,
        &format!(
            "{HEAD}{}components = 3\nell = 3\n",
            pca.replace("exact", "frequent-directions")
        ),
        &["`components`", "needs ell > 3"],
    );
    fails(
        good_data,
        &format!("{HEAD}{pca}verify = true\n"),
        &["`verify`"],
    );
    // A constant column under scale = true, named (numeric columns and a list coordinate).
    let constant = |d: &Path| {
        let b = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(datafusion::arrow::array::Float64Array::from(vec![
                    1.0, 2.0, 4.0,
                ])) as ArrayRef,
            ),
            (
                "flat",
                Arc::new(datafusion::arrow::array::Float64Array::from(vec![7.0; 3])) as ArrayRef,
            ),
        ])
        .unwrap();
        write_parquet(&d.join("data.parquet"), &b);
    };
    let numeric = pca.replace("[\"emb\"]", "[\"a\", \"flat\"]");
    fails_on_data(
        constant,
        &format!("{HEAD}{numeric}scale = true\n"),
        &["column `flat` is constant", "scale = false"],
    );
    fails_on_data(
        |d| {
            list_data(
                d,
                vec![
                    Some(vec![Some(1.0), Some(3.0)]),
                    Some(vec![Some(2.0), Some(3.0)]),
                ],
            )
        },
        &format!("{HEAD}{pca}scale = true\n"),
        &["coordinate 1 of column `emb` is constant"],
    );
    fails_on_data(
        |d| list_data(d, vec![Some(vec![Some(1.0), Some(3.0)])]),
        &format!("{HEAD}{pca}"),
        &["at least 2 rows"],
    );
    // project: the basis must be a pca stage.
    fails_once(
        2,
        &good_data,
        &format!("{HEAD}{STAGE}[stages.p]\nop = \"project\"\nsource = \"src\"\npca = \"top\"\ncolumns = [\"emb\"]\n"),
        &["[stages.p]", "`pca`", "stage `top` is a top_eigenvector stage"],
    );
}
