//! Every `cargo run --release -- sql …` command in the `sh` blocks of the README and of
//! `docs/guide.md` runs, on the shipped data, and prints what its comments say: a number
//! written `0.2797…` in a comment line next to the command must start a number of its output.
//! A `--pipeline P.toml` command gets that pipeline's outputs, written to a temporary
//! directory first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use tempfile::TempDir;

const PREFIX: &str = "cargo run --release -- sql";

/// The files whose examples run.
const FILES: [&str; 2] = ["README.md", "docs/guide.md"];

/// A command of one of [`FILES`] and the comment lines around it.
struct Example {
    /// `FILE:LINE`, for messages.
    line: String,
    command: String,
    comments: Vec<String>,
}

fn examples_of(file: &str, text: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut in_sh = false;
    // Logical lines of the current block: (first line number, text).
    let mut lines: Vec<(usize, String)> = Vec::new();
    let mut pending = String::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim_start().starts_with("```") {
            if in_sh {
                out.extend(in_block(file, &lines));
                lines.clear();
            }
            in_sh = !in_sh && raw.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let text = raw.trim_end();
        match text.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(text.trim_start_matches(' '));
                lines.push((i + 1, std::mem::take(&mut pending)));
            }
        }
    }
    out
}

fn in_block(file: &str, lines: &[(usize, String)]) -> Vec<Example> {
    let is_comment = |s: &str| s.trim_start().starts_with('#');
    let mut out = Vec::new();
    for (k, (line, text)) in lines.iter().enumerate() {
        if !text.starts_with(PREFIX) {
            continue;
        }
        let mut comments = Vec::new();
        for (_, t) in lines[..k].iter().rev() {
            if !is_comment(t) {
                break;
            }
            comments.push(t.clone());
        }
        // Comments after a command are its own, unless another command follows them
        // directly (then they introduce that one).
        let after: Vec<&String> = lines[k + 1..]
            .iter()
            .map(|(_, t)| t)
            .take_while(|t| is_comment(t))
            .collect();
        let next = lines.get(k + 1 + after.len()).map(|(_, t)| t.as_str());
        if !next.is_some_and(|t| t.starts_with(PREFIX)) {
            comments.extend(after.into_iter().cloned());
        }
        out.push(Example {
            line: format!("{file}:{line}"),
            command: text.clone(),
            comments,
        });
    }
    out
}

/// Shell words: blanks separate, double or single quotes group (inside single quotes a `"`
/// is literal, as SQL's quoted identifiers need; the documented commands need no more).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut cur, mut any) = (String::new(), false);
    // The quote character of the group being read, if any.
    let mut open: Option<char> = None;
    for c in s.chars() {
        match (c, open) {
            ('"' | '\'', None) => {
                open = Some(c);
                any = true;
            }
            (c, Some(q)) if c == q => open = None,
            (c, None) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (c, _) => {
                cur.push(c);
                any = true;
            }
        }
    }
    let quoted = open.is_some();
    assert!(!quoted, "unbalanced quotes in {s}");
    if any {
        out.push(cur);
    }
    out
}

/// Numbers written `1.234…` (or `−1.234…`) in a comment.
fn promised_numbers(comment: &str) -> Vec<String> {
    let mut out = Vec::new();
    for token in comment.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')') {
        if let Some(num) = token.strip_suffix('…') {
            let num = num.replace('−', "-");
            if num.parse::<f64>().is_ok() {
                out.push(num);
            }
        }
    }
    out
}

#[test]
fn every_sql_example_in_the_readme_and_the_guide_runs_and_prints_what_it_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut examples = Vec::new();
    for file in FILES {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let found = examples_of(file, &text);
        assert!(!found.is_empty(), "{file} has no `sql` examples");
        examples.extend(found);
    }
    assert!(
        examples.len() >= 10,
        "found only {} examples",
        examples.len()
    );
    let tmp = TempDir::new().unwrap();
    let mut outputs: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut all = String::new();
    for ex in &examples {
        let mut args = words(&ex.command[PREFIX.len()..]);
        if let Some(i) = args.iter().position(|a| a == "--pipeline") {
            let pipeline = args[i + 1].clone();
            let dir = outputs.entry(pipeline.clone()).or_insert_with(|| {
                let dir = tmp.path().join(outputs_name(&pipeline));
                assert_ok(&sketchpipe(&[
                    "-q",
                    "run",
                    root.join(&pipeline).to_str().unwrap(),
                    "--output-dir",
                    dir.to_str().unwrap(),
                ]));
                dir
            });
            args[i] = "--dir".into();
            args[i + 1] = dir.display().to_string();
        }
        let out = Command::new(env!("CARGO_BIN_EXE_sketchpipe"))
            .arg("sql")
            .args(&args)
            .current_dir(root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}\n{}",
            ex.line,
            ex.command,
            stderr(&out)
        );
        let printed = stdout(&out);
        assert!(
            printed.lines().count() >= 5,
            "{}: no rows?\n{printed}",
            ex.line
        );
        for comment in &ex.comments {
            for num in promised_numbers(comment) {
                assert!(
                    printed.contains(&num),
                    "{}: the comment promises {num}…, the output is\n{printed}",
                    ex.line
                );
            }
        }
        all.push_str(&ex.command);
    }
    for f in [
        "el2n(",
        "grand(",
        "el2n_probs(",
        "grand_probs(",
        "uniform_hash(",
        "list_mean(",
        "list_stddev(",
        "top_eigenvector(",
        "top_eigenvector_stats(",
        "priority_sketch(",
        "coordinated_sketch(",
        "sketch_merge(",
        "sketch_product(",
    ] {
        assert!(all.contains(f), "no example in {FILES:?} runs {f}…)");
    }
}

fn outputs_name(pipeline: &str) -> String {
    Path::new(pipeline)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}
