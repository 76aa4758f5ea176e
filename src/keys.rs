//! Reading one TOML table key by key, so that every error names the file, the section and
//! the key, and unknown keys are caught (the keys a section accepts are exactly the ones its
//! parser asked for).

use std::path::Path;

use toml::{Table, Value};

use crate::{Error, Result};

/// A TOML table being validated; see the module docs.
pub struct Keys<'a> {
    file: &'a Path,
    section: String,
    table: &'a Table,
    known: Vec<&'static str>,
}

impl<'a> Keys<'a> {
    /// `section` is how the table is spelled in the file, e.g. `[stages.top]`.
    pub fn new(file: &'a Path, section: impl Into<String>, table: &'a Table) -> Self {
        Keys {
            file,
            section: section.into(),
            table,
            known: Vec::new(),
        }
    }

    /// A configuration error about `key` in this section.
    pub fn error(&self, key: &str, msg: impl std::fmt::Display) -> Error {
        Error::Config(format!(
            "{}: {} key `{key}`: {msg}",
            self.file.display(),
            self.section
        ))
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
            Some(Value::Table(t)) => Ok(Some(Keys::new(self.file, section, t))),
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
    use super::parse_bytes;

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
