//! Progress reporting for long scans and the run's log lines: a bar on a terminal, plain
//! periodic log lines when stderr is not a terminal (cron, Airflow, CI), one JSON object per
//! line with `--log-format json` (for schedulers and log shippers), nothing with `--quiet`.
//!
//! JSON records all have `time` (UTC, RFC 3339), `level` (`info`, `warning` or `error`), `event` and
//! `message`, plus event-specific fields: `progress` and `scan_done` carry `label`, `rows`,
//! `total_rows` (or null), `bytes`, `rows_per_sec`, `elapsed_s` and `eta_s` (or null).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
pub use serde_json::Value;

/// How a run reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, log lines otherwise.
    #[default]
    Auto,
    /// Log lines, whatever stderr is.
    Log,
    /// One JSON object per line (see the module docs), whatever stderr is.
    Json,
    /// Nothing but errors.
    Quiet,
}

/// Logs one event: `sketchpipe: MESSAGE` as text, or a JSON record with `fields` added.
pub fn event(mode: ProgressMode, event: &str, message: &str, fields: &[(&str, Value)]) {
    match mode {
        ProgressMode::Quiet => {}
        ProgressMode::Json => eprintln!("{}", json_record("info", event, message, fields)),
        ProgressMode::Auto | ProgressMode::Log => eprintln!("sketchpipe: {message}"),
    }
}

/// Logs a warning: `sketchpipe: warning: MESSAGE` as text, or a JSON record with level
/// `warning`, event `warning`, the `kind` of warning and `fields`. `--quiet` keeps it out.
pub fn warning(mode: ProgressMode, kind: &str, message: &str, fields: &[(&str, Value)]) {
    match mode {
        ProgressMode::Quiet => {}
        ProgressMode::Json => {
            let mut all = vec![("kind", Value::from(kind))];
            all.extend(fields.iter().cloned());
            eprintln!("{}", json_record("warning", "warning", message, &all))
        }
        ProgressMode::Auto | ProgressMode::Log => eprintln!("sketchpipe: warning: {message}"),
    }
}

/// One JSON log line (no trailing newline).
pub fn json_record(level: &str, event: &str, message: &str, fields: &[(&str, Value)]) -> String {
    let mut record = serde_json::Map::new();
    record.insert(
        "time".into(),
        Value::from(
            chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
        ),
    );
    record.insert("level".into(), Value::from(level));
    record.insert("event".into(), Value::from(event));
    record.insert("message".into(), Value::from(message));
    for (k, v) in fields {
        record.insert((*k).to_string(), v.clone());
    }
    Value::Object(record).to_string()
}

const LOG_EVERY: Duration = Duration::from_secs(5);

/// A bar style whose `{rate}` is whole rows per second (`55,966 rows/s`): indicatif's own
/// `{per_sec}` prints four decimals.
fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid template")
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&rate(state.per_sec()));
            },
        )
}

/// A rate as a bar shows it.
fn rate(rows_per_sec: f64) -> String {
    format!(
        "{} rows/s",
        HumanCount(rows_per_sec.max(0.0).round() as u64)
    )
}

/// Progress of one scan: rows and decoded bytes, rate, and an ETA when the total row count is
/// known (Parquet footers carry it for free).
pub struct Progress {
    label: String,
    total: Option<u64>,
    rows: u64,
    bytes: u64,
    start: Instant,
    last_log: Instant,
    sink: Sink,
}

enum Sink {
    Bar(ProgressBar),
    Log,
    Json,
    Quiet,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: Option<u64>, mode: ProgressMode) -> Self {
        let label = label.into();
        let terminal = std::io::stderr().is_terminal();
        let sink = match mode {
            ProgressMode::Quiet => Sink::Quiet,
            ProgressMode::Auto if terminal => {
                let bar = match total {
                    Some(t) => ProgressBar::new(t).with_style(
                        bar_style(
                            "{prefix} [{bar:30}] {human_pos}/{human_len} rows  {msg}  {rate}  ETA {eta}",
                        )
                        .progress_chars("=> "),
                    ),
                    None => ProgressBar::new_spinner().with_style(bar_style(
                        "{prefix} {spinner} {human_pos} rows  {msg}  {rate}",
                    )),
                };
                bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
                bar.set_prefix(label.clone());
                Sink::Bar(bar)
            }
            ProgressMode::Json => {
                event(
                    mode,
                    "scan_started",
                    &format!("{label}: started"),
                    &[
                        ("label", Value::from(label.as_str())),
                        ("total_rows", Value::from(total)),
                    ],
                );
                Sink::Json
            }
            ProgressMode::Auto | ProgressMode::Log => {
                eprintln!(
                    "sketchpipe: {label}: started{}",
                    total.map(|t| format!(" ({t} rows)")).unwrap_or_default()
                );
                Sink::Log
            }
        };
        let now = Instant::now();
        Progress {
            label,
            total,
            rows: 0,
            bytes: 0,
            start: now,
            last_log: now,
            sink,
        }
    }

    /// Records one batch.
    pub fn inc(&mut self, rows: u64, bytes: u64) {
        self.rows += rows;
        self.bytes += bytes;
        match &self.sink {
            Sink::Bar(bar) => {
                bar.set_position(self.rows);
                bar.set_message(format!("{:.1} MB", self.bytes as f64 / 1e6));
            }
            Sink::Log if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                eprintln!("sketchpipe: {}: {}", self.label, self.line());
            }
            Sink::Json if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                self.json("progress", self.line());
            }
            _ => {}
        }
    }

    /// Ends the scan, leaving a final summary line (except in quiet mode).
    pub fn finish(self) {
        match &self.sink {
            Sink::Bar(bar) => {
                bar.finish_and_clear();
                eprintln!("sketchpipe: {}: done, {}", self.label, self.line());
            }
            Sink::Log => eprintln!("sketchpipe: {}: done, {}", self.label, self.line()),
            Sink::Json => self.json("scan_done", format!("done, {}", self.line())),
            Sink::Quiet => {}
        }
    }

    fn json(&self, name: &str, line: String) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = self.rows as f64 / secs;
        let eta = self
            .total
            .filter(|t| self.rows < *t && rate > 0.0)
            .map(|t| (t - self.rows) as f64 / rate);
        event(
            ProgressMode::Json,
            name,
            &format!("{}: {line}", self.label),
            &[
                ("label", Value::from(self.label.as_str())),
                ("rows", Value::from(self.rows)),
                ("total_rows", Value::from(self.total)),
                ("bytes", Value::from(self.bytes)),
                ("rows_per_sec", Value::from(rate)),
                ("elapsed_s", Value::from(secs)),
                ("eta_s", Value::from(eta)),
            ],
        );
    }

    fn line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = self.rows as f64 / secs;
        let mut s = format!("{} rows", self.rows);
        if let Some(t) = self.total.filter(|t| *t > 0) {
            s += &format!(" ({:.0}%)", 100.0 * self.rows as f64 / t as f64);
        }
        s += &format!(
            ", {:.1} MB decoded, {:.0} rows/s, {:.1}s",
            self.bytes as f64 / 1e6,
            rate,
            secs
        );
        if let Some(t) = self.total {
            if self.rows < t && rate > 0.0 {
                s += &format!(", ETA {:.0}s", (t - self.rows) as f64 / rate);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    /// The bar's rate is whole rows per second with thousands separators, not indicatif's
    /// `55,965.6673/s`.
    #[test]
    fn the_bar_rate_is_whole_rows_per_second() {
        assert_eq!(super::rate(55_965.667_3), "55,966 rows/s");
        assert_eq!(super::rate(0.4), "0 rows/s");
    }
}
