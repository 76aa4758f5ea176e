//! `docs/reference.md` against the binary, so the reference cannot drift from the code: every
//! command's flags against its `--help`, every pipeline section's keys against the "accepted
//! keys" its parser lists, every output table's columns and types (and the Parquet metadata
//! keys) against what the shipped pipelines write, the SQL functions against what a session
//! registers, and the exit codes against `--help` and the JSON error records. Also: every
//! relative link in the docs resolves, and no file of the repository refers to a file outside
//! it.
//!
//! Everything goes through the `sketchpipe` binary (and plain DataFusion), never through the
//! crate's internals. The reference's tables have a fixed layout this file parses: a heading
//! (`### Keys of …`, `### Table `T` of `OP``, `### `sketchpipe CMD``, `## SQL functions`,
//! `## Parquet metadata`, `## Exit codes`) followed by a Markdown table whose first column is
//! the name in backticks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use tempfile::TempDir;

use crate::common::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn reference() -> String {
    std::fs::read_to_string(root().join("docs/reference.md")).expect("docs/reference.md exists")
}

/// A heading of a Markdown file and the rows of the first table under it (header and
/// separator rows dropped), each row split into trimmed cells.
struct Section {
    level: usize,
    heading: String,
    rows: Vec<Vec<String>>,
}

fn sections(markdown: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut in_code = false;
    // Whether the current section's table has been read to its end.
    let mut table_done = false;
    let mut in_table = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if let Some(level) = heading_level(line) {
            out.push(Section {
                level,
                heading: line[level..].trim().to_string(),
                rows: Vec::new(),
            });
            table_done = false;
            in_table = false;
            continue;
        }
        let Some(section) = out.last_mut() else {
            continue;
        };
        if line.starts_with('|') && !table_done {
            if !in_table {
                in_table = true; // the header row
                continue;
            }
            let cells = cells(line);
            if cells
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
            {
                continue; // the separator row
            }
            section.rows.push(cells);
        } else if in_table {
            table_done = true;
            in_table = false;
        }
    }
    out
}

fn heading_level(line: &str) -> Option<usize> {
    let level = line.chars().take_while(|c| *c == '#').count();
    (level > 0 && line[level..].starts_with(' ')).then_some(level)
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// The `code spans` of a cell or heading, in order.
fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, t)| t.to_string())
        .collect()
}

/// The sections under the `## NAME` chapter of the reference.
fn chapter<'a>(all: &'a [Section], name: &str) -> Vec<&'a Section> {
    let start = all
        .iter()
        .position(|s| s.level == 2 && s.heading == name)
        .unwrap_or_else(|| panic!("docs/reference.md has no `## {name}` chapter"));
    let mut out = vec![&all[start]];
    out.extend(all[start + 1..].iter().take_while(|s| s.level > 2));
    out
}

fn set<T: Ord + Clone>(items: impl IntoIterator<Item = T>) -> BTreeSet<T> {
    items.into_iter().collect()
}

/// Asserts two sets are equal, printing what is missing on each side.
fn assert_same(what: &str, documented: &BTreeSet<String>, actual: &BTreeSet<String>) {
    let undocumented: Vec<_> = actual.difference(documented).collect();
    let stale: Vec<_> = documented.difference(actual).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "{what}: docs/reference.md does not list {undocumented:?}; it lists {stale:?}, which \
         the binary does not have"
    );
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sketchpipe"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the sketchpipe binary runs")
}

// ---------------------------------------------------------------------------------------
// Commands and flags

/// The long flags of a `--help` text (`--out`, `--log-format`, …).
fn help_flags(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        if indent > 8 || !line.trim_start().starts_with('-') {
            continue;
        }
        for token in line.split_whitespace() {
            if !token.starts_with('-') {
                break; // the description
            }
            if let Some(name) = token.strip_prefix("--") {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                out.insert(format!("--{name}"));
            }
        }
    }
    out
}

/// The subcommands a `--help` text lists under `Commands:` (without `help`).
fn help_commands(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.len() - l.trim_start().len() <= 4)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

fn help(args: &[&str]) -> String {
    let mut args = args.to_vec();
    args.push("--help");
    let out = sketchpipe(&args);
    assert_ok(&out);
    stdout(&out)
}

fn documented_flags(section: &Section) -> BTreeSet<String> {
    section
        .rows
        .iter()
        .flat_map(|r| backticked(&r[0]))
        .filter_map(|t| {
            t.starts_with("--")
                .then(|| t.split_whitespace().next().unwrap().to_string())
        })
        .collect()
}

#[test]
fn the_reference_lists_every_command_and_every_flag_of_each() {
    let all = sections(&reference());
    let commands = chapter(&all, "Commands");

    let global = commands
        .iter()
        .find(|s| s.heading == "Global flags")
        .expect("a `### Global flags` table");
    let top = help(&[]);
    let global_flags = help_flags(&top);
    assert_same("global flags", &documented_flags(global), &global_flags);

    // Every command (and every `generate` kind) has a section, and nothing else does.
    let mut expected = BTreeSet::new();
    for c in help_commands(&top) {
        if c == "generate" {
            for kind in help_commands(&help(&["generate"])) {
                expected.insert(format!("generate {kind}"));
            }
        } else {
            expected.insert(c);
        }
    }
    let mut documented = BTreeSet::new();
    for s in commands.iter().filter(|s| s.level == 3) {
        let Some(command) = backticked(&s.heading)
            .first()
            .and_then(|h| h.strip_prefix("sketchpipe ").map(str::to_string))
        else {
            continue;
        };
        let args: Vec<&str> = command.split_whitespace().collect();
        let flags: BTreeSet<String> = help_flags(&help(&args))
            .difference(&global_flags)
            .cloned()
            .collect();
        assert_same(
            &format!("flags of `sketchpipe {command}`"),
            &documented_flags(s),
            &flags,
        );
        documented.insert(command);
    }
    assert_same("commands", &documented, &expected);
}

// ---------------------------------------------------------------------------------------
// Pipeline keys

/// What a `### Keys of …` heading is about.
enum KeySection {
    TopLevel,
    Pipeline,
    Source,
    Stage(String),
    Proxy,
}

fn key_section(heading: &str) -> KeySection {
    let ticks = backticked(heading);
    match ticks.first().map(String::as_str) {
        None if heading == "Keys of the top level" => KeySection::TopLevel,
        Some("[pipeline]") => KeySection::Pipeline,
        Some("[sources.NAME]") => KeySection::Source,
        Some("[stages.NAME.proxy]") => KeySection::Proxy,
        Some("[stages.NAME]") => {
            let op = ticks
                .get(1)
                .and_then(|t| t.strip_prefix("op = \""))
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or_else(|| panic!("`### {heading}`: expected `op = \"…\"`"));
            KeySection::Stage(op.to_string())
        }
        _ => panic!("`### {heading}`: this test does not know that section"),
    }
}

/// The key of a row (its first code span).
fn row_key(row: &[String]) -> String {
    backticked(&row[0])
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("a key row without a `key`: {row:?}"))
}

/// The lines of a section that make its parser reach `finish()`: every key whose default
/// says `required`, and the first of the keys whose default says `one of …`, with a value of
/// the documented type (never checked against data: the parser fails before anything is read).
fn minimal_keys(rows: &[Vec<String>], op: Option<&str>) -> String {
    let mut text = String::new();
    if let Some(op) = op {
        text.push_str(&format!("op = \"{op}\"\n"));
    }
    let mut one_of_done = false;
    for row in rows {
        let (key, kind, default) = (row_key(row), row[1].as_str(), row[2].as_str());
        let needed = if default.starts_with("required") {
            true
        } else if default.starts_with("one of") && !one_of_done {
            one_of_done = true;
            true
        } else {
            false
        };
        if !needed || key == "op" {
            continue;
        }
        let value = if kind.starts_with("list of strings") {
            format!("[\"v_{key}_1\", \"v_{key}_2\"]")
        } else if kind.starts_with("string") {
            format!("\"v_{key}.parquet\"")
        } else {
            panic!("key `{key}`: no test value for a required {kind}");
        };
        text.push_str(&format!("{key} = {value}\n"));
    }
    text
}

/// The keys listed in an "unknown key (accepted keys: a, b)" error.
fn accepted_keys(stderr: &str) -> BTreeSet<String> {
    let start = stderr
        .find("accepted keys: ")
        .unwrap_or_else(|| panic!("no list of accepted keys in:\n{stderr}"))
        + "accepted keys: ".len();
    let end = start + stderr[start..].find(')').expect("the list ends with `)`");
    stderr[start..end]
        .split(", ")
        .map(|k| k.trim().to_string())
        .collect()
}

const UNKNOWN: &str = "zz_not_a_key";

#[test]
fn the_reference_lists_every_pipeline_key_each_section_accepts() {
    let all = sections(&reference());
    let keys = chapter(&all, "Pipeline keys");
    let key_sections: Vec<&&Section> = keys
        .iter()
        .filter(|s| s.level == 3 && s.heading.starts_with("Keys of"))
        .collect();
    let prune_rows = &key_sections
        .iter()
        .find(|s| matches!(key_section(&s.heading), KeySection::Stage(op) if op == "prune_scores"))
        .expect("a prune_scores key table")
        .rows;
    let tmp = TempDir::new().unwrap();
    let mut ops = BTreeSet::new();
    for s in &key_sections {
        let documented = set(s.rows.iter().map(|r| row_key(r)));
        let unknown = format!("{UNKNOWN} = 1\n");
        let (text, where_) = match key_section(&s.heading) {
            KeySection::TopLevel => (unknown, "top level".to_string()),
            KeySection::Pipeline => (format!("[pipeline]\n{unknown}"), "[pipeline]".into()),
            KeySection::Source => (
                format!("[sources.src]\n{}{unknown}", minimal_keys(&s.rows, None)),
                "[sources.src]".into(),
            ),
            KeySection::Stage(op) => {
                ops.insert(op.clone());
                (
                    format!("[stages.s]\n{}{unknown}", minimal_keys(&s.rows, Some(&op))),
                    "[stages.s]".into(),
                )
            }
            KeySection::Proxy => (
                format!(
                    "[stages.s]\n{}[stages.s.proxy]\n{unknown}",
                    minimal_keys(prune_rows, Some("prune_scores"))
                ),
                "[stages.s.proxy]".into(),
            ),
        };
        let file = write_pipeline(tmp.path(), &text);
        let out = sketchpipe(&["run", file.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "`### {}`:\n{text}\n{err}",
            s.heading
        );
        assert!(
            err.contains(&format!("{where_} key `{UNKNOWN}`: unknown key")),
            "`### {}`: the pipeline did not reach the section's key check:\n{text}\n{err}",
            s.heading
        );
        assert_same(&s.heading, &documented, &accepted_keys(&err));
    }

    // The ops with a key table are the ops the parser knows.
    let file = write_pipeline(tmp.path(), "[stages.s]\nop = \"zz_not_an_op\"\n");
    let err = stderr(&sketchpipe(&["run", file.to_str().unwrap()]));
    let start = err.find("(available: ").expect("the error lists the ops") + 12;
    let end = start + err[start..].find(')').unwrap();
    let available = set(err[start..end].split(", ").map(str::to_string));
    assert_same("ops", &ops, &available);
}

// ---------------------------------------------------------------------------------------
// Output tables and metadata

/// An Arrow type in the reference's notation: `UInt32`, `List<Float64>`,
/// `Struct<index: UInt32, value: Float64>`.
fn type_name(t: &DataType) -> String {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            format!("List<{}>", type_name(f.data_type()))
        }
        DataType::Struct(fields) => format!(
            "Struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other:?}"),
    }
}

/// Columns `(name, type)` of a written table.
type Columns = Vec<(String, String)>;

/// What the runs wrote: `(op, table)` → the distinct schemas seen, and every metadata key.
#[derive(Default)]
struct Written {
    tables: BTreeMap<(String, String), BTreeSet<Columns>>,
    metadata_keys: BTreeSet<String>,
}

fn collect_written(dir: &Path, written: &mut Written) {
    for path in files_under(dir) {
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let file = File::open(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let kv: BTreeMap<String, String> = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e.key.clone(), e.value.clone()?)))
            .collect();
        let op = kv
            .get("sketchpipe.op")
            .unwrap_or_else(|| panic!("{} has no sketchpipe.op", path.display()))
            .clone();
        written
            .metadata_keys
            .extend(kv.keys().filter(|k| k.starts_with("sketchpipe.")).cloned());
        let table = path.file_stem().unwrap().to_string_lossy().into_owned();
        let columns = reader
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), type_name(f.data_type())))
            .collect();
        written
            .tables
            .entry((op, table))
            .or_default()
            .insert(columns);
    }
}

/// A small pipeline for the tables the shipped ones do not write: the incremental `state` and
/// `manifest` tables and a `sketch_merge` output; run with a `--run-date`.
fn extra_pipeline(dir: &Path) -> PathBuf {
    let days = dir.join("days");
    std::fs::create_dir_all(&days).unwrap();
    std::fs::copy(
        root().join("data/embeddings.parquet"),
        days.join("day-0.parquet"),
    )
    .unwrap();
    let left = root().join("data/pair/left.parquet");
    write_pipeline(
        dir,
        &format!(
            "[pipeline]\noutput_dir = \"out\"\n\
             [sources.days]\npath = \"days\"\n\
             [sources.left]\npath = \"{}\"\n\
             [sources.even]\nsql = \"SELECT * FROM left WHERE key % 2 = 0\"\n\
             [sources.odd]\nsql = \"SELECT * FROM left WHERE key % 2 = 1\"\n\
             [stages.top_inc]\nop = \"top_eigenvector\"\nsource = \"days\"\ncolumns = [\"emb\"]\n\
             algorithm = \"exact\"\nincremental = true\n\
             [stages.pca_inc]\nop = \"pca\"\nsource = \"days\"\ncolumns = [\"emb\"]\n\
             incremental = true\n\
             [stages.sketch_inc]\nop = \"coordinated_sketch\"\nsource = \"days\"\nkey = \"id\"\n\
             columns = [\"emb\"]\nsize = 100\nincremental = true\n\
             [stages.even_sketch]\nop = \"coordinated_sketch\"\nsource = \"even\"\nkey = \"key\"\n\
             columns = [\"values\"]\nsize = 100\nseed = 7\n\
             [stages.odd_sketch]\nop = \"coordinated_sketch\"\nsource = \"odd\"\nkey = \"key\"\n\
             columns = [\"values\"]\nsize = 100\nseed = 7\n\
             [stages.merged]\nop = \"sketch_merge\"\ninputs = [\"even_sketch\", \"odd_sketch\"]\n",
            left.display()
        ),
    )
}

#[test]
fn the_reference_lists_every_table_column_and_metadata_key_the_pipelines_write() {
    let tmp = TempDir::new().unwrap();
    let mut written = Written::default();
    let mut pipelines: Vec<PathBuf> = std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    pipelines.sort();
    assert!(!pipelines.is_empty());
    for p in &pipelines {
        let out = tmp.path().join(p.file_stem().unwrap());
        assert_ok(&sketchpipe(&[
            "-q",
            "run",
            p.to_str().unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
        ]));
        collect_written(&out, &mut written);
    }
    let extra = tmp.path().join("extra");
    let file = extra_pipeline(&extra);
    assert_ok(&sketchpipe(&[
        "-q",
        "run",
        file.to_str().unwrap(),
        "--run-date",
        "2024-01-01",
    ]));
    collect_written(&extra.join("out"), &mut written);

    let all = sections(&reference());
    let mut documented: BTreeMap<(String, String), &Section> = BTreeMap::new();
    for s in chapter(&all, "Output tables") {
        let Some(rest) = s.heading.strip_prefix("Table ") else {
            continue;
        };
        let names = backticked(rest);
        let (table, ops) = names.split_first().expect("`### Table `T` of `OP``");
        assert!(!ops.is_empty(), "`### {}` names no op", s.heading);
        for op in ops {
            documented.insert((op.clone(), table.clone()), s);
        }
    }
    let name = |(op, table): &(String, String)| format!("{op}.{table}");
    assert_same(
        "tables (op.table)",
        &set(documented.keys().map(name)),
        &set(written.tables.keys().map(name)),
    );
    for (key, schemas) in &written.tables {
        let doc = &documented[key];
        let doc_names: Vec<String> = doc.rows.iter().map(|r| row_key(r)).collect();
        for columns in schemas {
            let names: Vec<String> = columns.iter().map(|c| c.0.clone()).collect();
            assert_eq!(
                doc_names,
                names,
                "the columns of table `{}` (in order)",
                name(key)
            );
            for ((column, t), row) in columns.iter().zip(&doc.rows) {
                let cell = &row[1];
                if cell.contains("input's type") {
                    continue;
                }
                assert!(
                    backticked(cell).contains(t),
                    "`{}.{column}` is {t}; docs/reference.md says {cell}",
                    name(key)
                );
            }
        }
    }

    let metadata = chapter(&all, "Parquet metadata");
    let documented_keys = set(metadata[0].rows.iter().map(|r| row_key(r)));
    assert_same(
        "Parquet metadata keys",
        &documented_keys,
        &written.metadata_keys,
    );
}

// ---------------------------------------------------------------------------------------
// SQL functions

/// `(name, function_type)` of every routine a session lists, from `sketchpipe sql` output.
fn binary_routines(query: &str) -> BTreeSet<(String, String)> {
    let out = sketchpipe(&["sql", "--format", "json", query]);
    assert_ok(&out);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    rows.iter()
        .map(|r| {
            (
                r["routine_name"].as_str().unwrap().to_string(),
                r["function_type"].as_str().unwrap().to_lowercase(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_reference_lists_every_sql_function_the_binary_registers() {
    let query = "SELECT DISTINCT routine_name, function_type FROM information_schema.routines";
    // The binary's functions, less what a plain DataFusion session of the same build has.
    let plain = SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
    let mut builtin = BTreeSet::new();
    for batch in collect_sql(&plain, query).await {
        let names = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8).unwrap();
        builtin.extend(
            names
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_string),
        );
    }
    assert!(builtin.contains("sum"), "{builtin:?}");
    let ours: BTreeSet<(String, String)> = binary_routines(query)
        .into_iter()
        .filter(|(name, _)| !builtin.contains(name))
        .collect();

    let all = sections(&reference());
    let table = chapter(&all, "SQL functions")[0];
    let documented: BTreeSet<(String, String)> = table
        .rows
        .iter()
        .map(|r| {
            let call = row_key(r);
            let name = call.split('(').next().unwrap().trim().to_string();
            (name, r[1].trim().to_lowercase())
        })
        .collect();
    let show = |s: &BTreeSet<(String, String)>| set(s.iter().map(|(n, k)| format!("{n} ({k})")));
    assert_same("SQL functions", &show(&documented), &show(&ours));

    // `sql --help` names them too.
    let help = help(&["sql"]);
    for (name, _) in &documented {
        assert!(
            help.contains(name.as_str()),
            "sql --help does not name {name}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// JSON log records

/// The records of `--log-format json` output on stderr.
fn json_records(out: &Output) -> Vec<serde_json::Map<String, serde_json::Value>> {
    stderr(out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON record ({e}): {l}"))
                .as_object()
                .cloned()
                .unwrap_or_else(|| panic!("not a JSON object: {l}"))
        })
        .collect()
}

#[test]
fn every_json_log_record_a_command_prints_is_in_the_reference_with_its_fields() {
    let all = sections(&reference());
    let table = chapter(&all, "JSON log records")[0];
    // event → its added fields
    let documented: BTreeMap<String, BTreeSet<String>> = table
        .rows
        .iter()
        .map(|r| (row_key(r), set(backticked(&r[2]))))
        .collect();

    let tmp = TempDir::new().unwrap();
    let json = ["--log-format", "json"];
    let demo = root().join("pipelines/demo.toml");
    let extra = tmp.path().join("extra");
    let extra_file = extra_pipeline(&extra);
    let generated = tmp.path().join("generated.parquet");
    let bad = write_pipeline(tmp.path(), "[stages.s]\nop = \"sketch_merge\"\n");
    let out_dir = tmp.path().join("demo");
    let commands: [Vec<&str>; 4] = [
        vec![
            "run",
            demo.to_str().unwrap(),
            "--output-dir",
            out_dir.to_str().unwrap(),
        ],
        vec!["run", extra_file.to_str().unwrap()],
        vec![
            "generate",
            "low-rank",
            "--out",
            generated.to_str().unwrap(),
            "--rows",
            "100",
        ],
        vec!["run", bad.to_str().unwrap()],
    ];
    let mut seen = BTreeSet::new();
    for mut args in commands {
        args.extend(json);
        let out = sketchpipe(&args);
        for record in json_records(&out) {
            let event = record["event"].as_str().expect("an event").to_string();
            let fields: BTreeSet<String> = record
                .keys()
                .filter(|k| !matches!(k.as_str(), "time" | "level" | "event" | "message"))
                .cloned()
                .collect();
            let doc = documented.get(&event).unwrap_or_else(|| {
                panic!("`sketchpipe {args:?}` printed event `{event}`, which docs/reference.md does not list")
            });
            assert_same(&format!("fields of JSON event `{event}`"), doc, &fields);
            seen.insert(event);
        }
    }
    for event in [
        "scan_started",
        "scan_done",
        "stage_written",
        "incremental",
        "run_done",
        "file_written",
        "error",
    ] {
        assert!(
            seen.contains(event),
            "no command printed `{event}`: {seen:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Exit codes

#[test]
fn the_reference_exit_codes_are_the_binarys() {
    let all = sections(&reference());
    let table = chapter(&all, "Exit codes")[0];
    let plain = |s: &str| {
        s.replace('`', "")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    // code → (kind, meaning)
    let documented: BTreeMap<i32, (String, String)> = table
        .rows
        .iter()
        .map(|r| {
            let code = r[0]
                .parse()
                .unwrap_or_else(|_| panic!("exit code {:?}", r[0]));
            (code, (row_key(&r[1..]), plain(&r[2])))
        })
        .collect();

    // `sketchpipe --help`: "Exit codes: 0 success; 1 internal error; …; 130 interrupted."
    let top = plain(&help(&[]));
    let list = top
        .split("exit codes: ")
        .nth(1)
        .expect("`sketchpipe --help` lists the exit codes");
    let list = &list[..list.find('.').map_or(list.len(), |i| i)];
    let mut helped = BTreeMap::new();
    for item in list.split("; ") {
        let (code, meaning) = item.trim().split_once(' ').unwrap();
        helped.insert(code.parse::<i32>().unwrap(), meaning.to_string());
    }
    assert_same(
        "exit codes",
        &set(documented.keys().map(i32::to_string)),
        &set(helped.keys().map(i32::to_string)),
    );
    for (code, meaning) in &helped {
        let doc = &documented[code].1;
        assert!(
            doc.starts_with(meaning.as_str()),
            "exit code {code}: --help says \"{meaning}\", docs/reference.md \"{doc}\""
        );
    }

    // The `kind` of the JSON error record, for a failure of each family that is easy to cause.
    let tmp = TempDir::new().unwrap();
    let bad_key = write_pipeline(tmp.path(), "[stages.s]\nop = \"sketch_merge\"\nzz = 1\n");
    let missing = tmp.path().join("missing.toml");
    std::fs::write(
        &missing,
        "[sources.src]\npath = \"no-such-file.parquet\"\n\
         [stages.s]\nop = \"top_eigenvector\"\nsource = \"src\"\ncolumns = [\"emb\"]\n",
    )
    .unwrap();
    let failures: [Vec<&str>; 3] = [
        vec!["run", bad_key.to_str().unwrap()],
        vec!["sql", "SELECT el2n(make_array(1.0, 2.0), 5)"],
        vec!["run", missing.to_str().unwrap()],
    ];
    let mut seen = BTreeSet::new();
    for mut args in failures {
        args.extend(["--log-format", "json"]);
        let out = run_in(tmp.path(), &args);
        let code = out.status.code().expect("an exit code");
        let err = stderr(&out);
        let last: serde_json::Value =
            serde_json::from_str(err.lines().last().expect("an error record")).unwrap();
        assert_eq!(last["event"], "error", "{args:?}: {err}");
        assert_eq!(last["exit_code"], code, "{args:?}: {err}");
        let (kind, _) = documented
            .get(&code)
            .unwrap_or_else(|| panic!("{args:?} exited with undocumented code {code}"));
        assert_eq!(last["kind"], kind.as_str(), "{args:?}: {err}");
        seen.insert(code);
    }
    assert_eq!(
        seen,
        set([2, 3, 4]),
        "one failure of each of config, input, io"
    );
}

// ---------------------------------------------------------------------------------------
// Links, and nothing outside the repository

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for s in sections(markdown) {
        let base = slug(&s.heading);
        let n = seen.entry(base.clone()).or_default();
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of `[text](target)` links outside code.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_code = false;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop inline code spans.
        let text: String = line
            .split('`')
            .enumerate()
            .filter(|(k, _)| k % 2 == 0)
            .map(|(_, t)| t)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            out.push((i + 1, after[..end].to_string()));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_resolves_to_a_file_and_heading_of_the_repository() {
    let root = root().canonicalize().unwrap();
    let mut files = vec![root.join("README.md"), root.join("data/README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target) in links(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let where_ = format!(
                "{}:{line}: {target}",
                file.strip_prefix(&root).unwrap().display()
            );
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let Ok(resolved) = resolved.canonicalize() else {
                broken.push(format!("{where_} (no such file)"));
                continue;
            };
            if !resolved.starts_with(&root) {
                broken.push(format!("{where_} (outside the repository)"));
                continue;
            }
            if let Some(anchor) = anchor {
                let target_text = std::fs::read_to_string(&resolved).unwrap_or_default();
                if !anchors(&target_text).contains(anchor) {
                    broken.push(format!("{where_} (no such heading)"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Every file of the repository: the tracked ones and the new ones git does not ignore, or,
/// without git, everything under the root but `target/`, `.git`, and the ignored outputs.
fn repository_files() -> Vec<PathBuf> {
    let root = root();
    let git = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output();
    if let Some(out) = git.ok().filter(|o| o.status.success()) {
        return String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(|p| root.join(p))
            .filter(|p| p.is_file())
            .collect();
    }
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if !matches!(name.as_str(), "target" | ".git" | "bench-data" | "out") {
                    walk(&p, out);
                }
            } else if name != ".git" {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

#[test]
fn no_file_of_the_repository_refers_to_a_file_outside_it() {
    // Spelled in two parts, so that this file does not contain what it looks for.
    let needles: Vec<String> = [
        ("ALGORITHMS", ".md"),
        ("PRODUCT", ".md"),
        ("STYLE", ".md"),
        ("../", "shared"),
        ("/work/", "shared"),
    ]
    .iter()
    .map(|(a, b)| format!("{a}{b}"))
    .collect();
    let mut found = Vec::new();
    for path in repository_files() {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            for needle in &needles {
                if line.contains(needle.as_str()) {
                    found.push(format!(
                        "{}:{}: {needle}",
                        path.strip_prefix(root()).unwrap_or(&path).display(),
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "files that refer to documents outside the repository:\n{}",
        found.join("\n")
    );
}
