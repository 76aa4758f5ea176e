//! Reading one TOML table key by key, so that every error names the file, the line, the
//! section and the key, and unknown keys are caught (the keys a section accepts are exactly
//! the ones its parser asked for).

use std::collections::BTreeMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::{Table, Value};

use crate::{Error, Result};

/// The line of every key of a TOML document, by dotted path (`stages.top.algorithm`); a
/// key given with `--set` has none.
#[derive(Debug, Clone, Default)]
pub struct KeyLines(BTreeMap<String, usize>);

impl KeyLines {
    /// The lines of `text`'s keys (none when it does not parse: the caller reports that).
    pub fn parse(text: &str) -> Self {
        fn walk(text: &str, prefix: &str, table: &DeTable<'_>, out: &mut BTreeMap<String, usize>) {
            for (key, value) in table {
                let path = match prefix {
                    "" => key.get_ref().to_string(),
                    p => format!("{p}.{}", key.get_ref()),
                };
                let line = 1 + text[..key.span().start.min(text.len())]
                    .bytes()
                    .filter(|b| *b == b'\n')
                    .count();
                if let DeValue::Table(t) = value.get_ref() {
                    walk(text, &path, t, out);
                }
                out.entry(path).or_insert(line);
            }
        }
        let mut lines = BTreeMap::new();
        if let Ok(doc) = DeTable::parse(text) {
            walk(text, "", doc.get_ref(), &mut lines);
        }
        KeyLines(lines)
    }

    /// The 1-based line of the key at dotted `path`.
    pub fn line(&self, path: &str) -> Option<usize> {
        self.0.get(path).copied()
    }

    /// `file:LINE` for the key at `path`, or `file` when its line is not known.
    pub fn locate(&self, file: &Path, path: &str) -> String {
        match self.line(path) {
            Some(line) => format!("{}:{line}", file.display()),
            None => file.display().to_string(),
        }
    }

    /// A configuration error about `key` of `section` (as spelled in the file, `[stages.top]`,
    /// or `top level`): `FILE:LINE: [stages.top] key `k`: MSG`.
    pub fn key_error(
        &self,
        file: &Path,
        section: &str,
        key: &str,
        msg: impl std::fmt::Display,
    ) -> Error {
        let path = match section.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(section) => format!("{section}.{key}"),
            None => key.to_string(),
        };
        let at = self.locate(file, &path);
        Error::Config(format!("{at}: {section} key `{key}`: {msg}"))
    }
}

/// The lines of no document: keys read without a file's text.
static NO_LINES: KeyLines = KeyLines(BTreeMap::new());

/// A TOML table being validated; see the module docs.
pub struct Keys<'a> {
    file: &'a Path,
    section: String,
    table: &'a Table,
    known: Vec<&'static str>,
    lines: &'a KeyLines,
}

impl<'a> Keys<'a> {
    /// `section` is how the table is spelled in the file, e.g. `[stages.top]`, or `top level`.
    pub fn new(file: &'a Path, section: impl Into<String>, table: &'a Table) -> Self {
        Keys {
            file,
            section: section.into(),
            table,
            known: Vec::new(),
            lines: &NO_LINES,
        }
    }

    /// Errors name the line of the key (looked up in `lines`).
    pub fn with_lines(mut self, lines: &'a KeyLines) -> Self {
        self.lines = lines;
        self
    }

    /// A configuration error about `key` in this section: `FILE:LINE: [section] key `k`: …`.
    pub fn error(&self, key: &str, msg: impl std::fmt::Display) -> Error {
        self.lines.key_error(self.file, &self.section, key, msg)
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.table.get(key)
    }

    fn type_error(&self, key: &str, want: &str, got: &Value) -> Error {
        self.error(
            key,
            format!("expected {want}, got {} `{got}`", got.type_str()),
        )
    }

    /// An optional string.
    pub fn string(&mut self, key: &'static str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.type_error(key, "a string", v)),
        }
    }

    /// A required string.
    pub fn required_string(&mut self, key: &'static str) -> Result<String> {
        self.string(key)?
            .ok_or_else(|| self.error(key, "is required but missing"))
    }

    /// An optional string that must be one of `choices`.
    pub fn choice(&mut self, key: &'static str, choices: &[&str]) -> Result<Option<String>> {
        let value = self.string(key)?;
        if let Some(v) = &value {
            if !choices.contains(&v.as_str()) {
                return Err(self.error(key, format!("`{v}` is not one of: {}", choices.join(", "))));
            }
        }
        Ok(value)
    }

    /// An optional boolean.
    pub fn boolean(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b)),
            Some(v) => Err(self.type_error(key, "true or false", v)),
        }
    }

    /// An optional non-negative integer.
    pub fn unsigned(&mut self, key: &'static str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Integer(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(v) => Err(self.type_error(key, "a non-negative integer", v)),
        }
    }

    /// An optional finite number (integers are accepted).
    pub fn float(&mut self, key: &'static str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(Value::Float(f)) if f.is_finite() => Ok(Some(*f)),
            Some(v) => Err(self.type_error(key, "a number", v)),
        }
    }

    /// An optional size in bytes: an integer, or a string such as `"512MiB"`, `"2GiB"`,
    /// `"100MB"`, `"64KiB"`.
    pub fn bytes(&mut self, key: &'static str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Integer(i)) if *i > 0 => Ok(Some(*i as u64)),
            Some(Value::String(s)) => parse_bytes(s).map(Some).ok_or_else(|| {
                self.error(
                    key,
                    format!("`{s}` is not a size; write e.g. \"512MiB\", \"2GiB\" or a byte count"),
                )
            }),
            Some(v) => Err(self.type_error(key, "a size such as \"512MiB\"", v)),
        }
    }

    /// A required list of strings (a single string is accepted as a list of one).
    pub fn string_list(&mut self, key: &'static str) -> Result<Vec<String>> {
        let list = match self.get(key) {
            None => return Err(self.error(key, "is required but missing")),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        v => return Err(self.type_error(key, "a list of strings", v)),
                    }
                }
                out
            }
            Some(v) => return Err(self.type_error(key, "a list of strings", v)),
        };
        if list.is_empty() {
            return Err(self.error(key, "must name at least one column"));
        }
        Ok(list)
    }

    /// Fails on any key the parser did not ask for, listing the ones it accepts.
    pub fn finish(self) -> Result<()> {
        for key in self.table.keys() {
            if !self.known.contains(&key.as_str()) {
                let mut known = self.known.clone();
                known.sort_unstable();
                return Err(self.error(
                    key,
                    format!("unknown key (accepted keys: {})", known.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

impl<'a> Keys<'a> {
    /// An optional sub-table (`[stages.NAME.proxy]`), to be read key by key in turn.
    pub fn table(&mut self, key: &'static str) -> Result<Option<Keys<'a>>> {
        let section = format!("{}.{key}]", self.section.trim_end_matches(']'));
        match self.get(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(
                Keys::new(self.file, section, t).with_lines(self.lines),
            )),
            Some(v) => Err(self.error(
                key,
                format!("expected a table ({section}), got {}", v.type_str()),
            )),
        }
    }

    /// The raw value of `key` (marking it as accepted), for sections with their own structure.
    pub fn table_value(&mut self, key: &'static str) -> Option<&'a Value> {
        self.get(key)
    }
}

/// Parses `"512MiB"`-style sizes (binary `KiB/MiB/GiB/TiB`, decimal `KB/MB/GB/TB`, or `B`).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes >= 1.0 && bytes.is_finite()).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::{parse_bytes, KeyLines, Keys};

    /// Errors name the line of the key they are about, in top-level sections, stage sections
    /// and sub-tables alike.
    #[test]
    fn errors_name_the_line_of_the_key() {
        let text = "[pipeline]\nname = \"p\"\n\n[stages.top]\nop = \"x\"\nalgo = 1\n\
                    [stages.top.proxy]\nhidden = 0\n";
        let lines = KeyLines::parse(text);
        assert_eq!(lines.line("pipeline.name"), Some(2));
        assert_eq!(
            lines.line("stages.top"),
            Some(4),
            "a section's line is its header's"
        );
        assert_eq!(lines.line("stages.top.algo"), Some(6));
        assert_eq!(lines.line("stages.top.proxy.hidden"), Some(8));
        let doc: toml::Table = text.parse().unwrap();
        let file = std::path::Path::new("p.toml");
        let stage = doc["stages"]["top"].as_table().unwrap();
        let mut keys = Keys::new(file, "[stages.top]", stage).with_lines(&lines);
        keys.string("op").unwrap();
        let mut proxy = keys.table("proxy").unwrap().unwrap();
        let e = proxy.unsigned("hidden").unwrap();
        assert_eq!(e, Some(0));
        assert_eq!(
            proxy.error("hidden", "must be at least 1").to_string(),
            "p.toml:8: [stages.top.proxy] key `hidden`: must be at least 1"
        );
        let e = keys.finish().unwrap_err().to_string();
        assert!(
            e.starts_with("p.toml:6: [stages.top] key `algo`: unknown key"),
            "{e}"
        );
    }

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("1.5 GiB"), Some(3 << 29));
        assert_eq!(parse_bytes("100MB"), Some(100_000_000));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("12 parsecs"), None);
        assert_eq!(parse_bytes("0MiB"), None);
        assert_eq!(parse_bytes(""), None);
    }
}
