//! The shape of the code, pinned: no two source files import each other, directly or round a
//! loop (`crate::…` and `super::…` paths outside comments and tests, resolved to the file of
//! the longest module prefix), and only the registry lists the ops.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src` (`pipeline/run.rs` → `["pipeline", "run"]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without its tests and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `crate::a::b` / `super::super::c` paths of `code`, as module paths from the crate root.
fn paths(code: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < code.len() {
        let rest = &bytes[i..];
        let starts_word = i == 0 || !word(bytes[i - 1]);
        let head = ["crate::", "super::"]
            .into_iter()
            .find(|h| rest.starts_with(h.as_bytes()));
        let Some(head) = head.filter(|_| starts_word) else {
            i += 1;
            continue;
        };
        let mut supers = usize::from(head == "super::");
        let mut j = i + head.len();
        let mut parts = Vec::new();
        loop {
            let end = j + bytes[j..].iter().take_while(|b| word(**b)).count();
            if end == j {
                break;
            }
            let part = &code[j..end];
            if part == "super" && parts.is_empty() {
                supers += 1;
            } else {
                parts.push(part.to_string());
            }
            if bytes[end..].starts_with(b"::") {
                j = end + 2;
            } else {
                j = end;
                break;
            }
        }
        let base = &me[..me.len().saturating_sub(supers)];
        let mut full = base.to_vec();
        full.extend(parts);
        out.push(full);
        i = j.max(i + 1);
    }
    out
}

#[test]
fn no_two_source_files_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let by_module: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for file in &files {
        let me = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let deps = edges.entry(file.clone()).or_default();
        for path in paths(&code(&text), &me) {
            let target = (1..=path.len())
                .rev()
                .find_map(|n| by_module.get(&path[..n]));
            if let Some(t) = target.filter(|t| *t != file) {
                deps.insert(t.clone());
            }
        }
    }
    // A loop through `file` exists when `file` is reachable from one of its imports.
    let mut loops = Vec::new();
    for (file, deps) in &edges {
        for dep in deps {
            let (mut seen, mut stack) = (BTreeSet::new(), vec![(dep.clone(), vec![dep.clone()])]);
            while let Some((at, chain)) = stack.pop() {
                if &at == file {
                    loops.push(chain);
                    break;
                }
                if !seen.insert(at.clone()) {
                    continue;
                }
                for next in edges.get(&at).into_iter().flatten() {
                    let mut c = chain.clone();
                    c.push(next.clone());
                    stack.push((next.clone(), c));
                }
            }
        }
    }
    let shown: Vec<String> = loops
        .iter()
        .map(|chain| {
            chain
                .iter()
                .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
                .collect::<Vec<_>>()
                .join(" → ")
        })
        .collect();
    assert!(shown.is_empty(), "import cycles:\n{}", shown.join("\n"));
}

/// The op names appear as the registry's entries, each once, and nowhere in the pipeline layer
/// (which knows ops only through the `Op` trait).
#[test]
fn only_the_registry_knows_the_ops() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let names: Vec<&str> = sketchpipe::operators::registry::OPS
        .iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(
        names,
        [
            "top_eigenvector",
            "pca",
            "project",
            "prune_scores",
            "coordinated_sketch",
            "sketch_product",
            "sketch_merge",
            "sketch_regression",
            "sketch_search"
        ]
    );
    let mut files = Vec::new();
    rust_files(&root.join("src/pipeline"), &mut files);
    for file in files {
        let text = code(&std::fs::read_to_string(&file).unwrap());
        for name in &names {
            assert!(
                !text.contains(&format!("\"{name}\"")),
                "{} names the op `{name}`: the pipeline layer must go through the registry",
                file.display()
            );
        }
    }
}
