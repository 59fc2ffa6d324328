//! Figures: latency summaries, the summary table and its verdicts.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram holds (larger values are clamped): 10 minutes, in nanoseconds.
const MAX_NS: u64 = 600_000_000_000;

/// A latency histogram in nanoseconds (3 significant figures).
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_NS, 3)?)
}

/// Records one latency.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos())
        .unwrap_or(MAX_NS)
        .clamp(1, MAX_NS);
    h.saturating_record(ns);
}

/// Adds `from` into `into` (same bounds, so this cannot fail in practice).
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) -> anyhow::Result<()> {
    into.add(from)?;
    Ok(())
}

/// The percentiles every latency CDF is drawn and stored at (wrk reports the same ones).
pub const GRID: [f64; 23] = [
    0.1, 1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0,
    97.5, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

/// (percentile, microseconds) at `GRID`, for CDFs.
pub fn percentiles(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    GRID.iter()
        .map(|p| (*p, round1(h.value_at_quantile(p / 100.0) as f64 / 1_000.0)))
        .collect()
}

/// A ratio kept for comparison with a recorded run: its value and which way is better.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    pub key: String,
    pub value: f64,
    /// `higher` or `lower`.
    pub better: String,
    pub what: String,
}

impl Ratio {
    pub fn higher(key: &str, value: f64, what: &str) -> Self {
        Self {
            key: key.into(),
            value: round3(value),
            better: "higher".into(),
            what: what.into(),
        }
    }

    pub fn lower(key: &str, value: f64, what: &str) -> Self {
        Self {
            key: key.into(),
            value: round3(value),
            better: "lower".into(),
            what: what.into(),
        }
    }
}

/// A latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| round1(ns as f64 / 1_000.0);
        Self {
            count: h.len(),
            mean_us: round1(h.mean() / 1_000.0),
            min_us: us(h.min()),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }

    /// "p50 0.41 ms, p99 1.20 ms" for the table.
    pub fn short(&self) -> String {
        format!("p50 {} / p99 {}", fmt_us(self.p50_us), fmt_us(self.p99_us))
    }
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A duration given in microseconds, in the unit that reads best.
pub fn fmt_us(us: f64) -> String {
    if us.abs() < 100.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.3} ms", us / 1_000.0)
    }
}

/// A rate, grouped by thousands.
pub fn fmt_rate(per_s: f64) -> String {
    format!("{}/s", group(per_s.round() as i64))
}

pub fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

pub fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "—".into()
    }
}

pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        f64::NAN
    } else {
        a / b
    }
}

/// One line of the summary table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub scenario: String,
    pub figure: String,
    pub measured: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    /// `meets`, `MISSES`, `info` (no target), `smoke` (tiny size: not judged), `ERRORS` (requests
    /// failed), `FAILED` (the scenario did not finish), `skipped`.
    pub verdict: String,
}

impl Row {
    pub fn new(scenario: &str, figure: impl Into<String>, measured: impl Into<String>) -> Self {
        Self {
            scenario: scenario.to_owned(),
            figure: figure.into(),
            measured: measured.into(),
            baseline: String::new(),
            ratio: String::new(),
            target: String::new(),
            verdict: "info".into(),
        }
    }

    pub fn baseline(mut self, baseline: impl Into<String>) -> Self {
        self.baseline = baseline.into();
        self
    }

    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = fmt_ratio(ratio);
        self
    }

    /// Sets the target and judges it; tiny runs are never judged.
    pub fn target(mut self, target: impl Into<String>, met: bool, tiny: bool) -> Self {
        self.target = target.into();
        self.verdict = if tiny {
            "smoke".into()
        } else if met {
            "meets".into()
        } else {
            "MISSES".into()
        };
        self
    }

    /// A row flagging failed requests, or None when there were none.
    pub fn failures(scenario: &str, what: &str, count: u64) -> Option<Self> {
        (count > 0).then(|| {
            Self::new(
                scenario,
                what,
                group(i64::try_from(count).unwrap_or(i64::MAX)),
            )
            .verdict("ERRORS")
        })
    }

    pub fn verdict(mut self, verdict: &str) -> Self {
        self.verdict = verdict.to_owned();
        self
    }
}

/// What one scenario produced.
pub struct ScenarioReport {
    /// Every figure, for the JSON file.
    pub figures: serde_json::Value,
    /// The summary lines.
    pub rows: Vec<Row>,
    /// Caveats worth reading next to the figures.
    pub notes: Vec<String>,
    /// The ratios compared with the recorded run.
    pub ratios: Vec<Ratio>,
    /// Charts to draw beside the JSON: (file name part, chart).
    pub charts: Vec<(String, crate::plots::Chart)>,
}

/// The rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "scenario", "figure", "measured", "baseline", "ratio", "target", "verdict",
    ];
    let cells: Vec<[&str; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.as_str(),
                r.figure.as_str(),
                r.measured.as_str(),
                r.baseline.as_str(),
                r.ratio.as_str(),
                r.target.as_str(),
                r.verdict.as_str(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[&str; 7]| {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            if i > 0 {
                s.push_str(" | ");
            }
            s.push_str(c);
            s.push_str(&" ".repeat(w - c.chars().count()));
        }
        s.trim_end().to_owned()
    };
    let mut out = line(&header);
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&rule.join("-|-"));
    for row in &cells {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_and_units() {
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(999), "999");
        assert_eq!(group(-1_000), "-1,000");
        assert_eq!(fmt_us(12.34), "12.3 µs");
        assert_eq!(fmt_us(1_500.0), "1.500 ms");
        assert_eq!(fmt_rate(15_000.4), "15,000/s");
    }

    #[test]
    fn latency_summary() {
        let mut h = histogram().unwrap();
        for ms in 1..=100u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 100);
        assert!((l.p50_us - 50_000.0).abs() < 100.0, "{l:?}");
        assert!((l.max_us - 100_000.0).abs() < 100.0, "{l:?}");
    }

    #[test]
    fn table_aligns() {
        let rows = vec![
            Row::new("a", "x", "1").target("≤ 2", true, false),
            Row::new("bbb", "yy", "22").target("≤ 2", false, false),
        ];
        let t = table(&rows);
        assert!(t.contains("meets"));
        assert!(t.contains("MISSES"));
        assert_eq!(t.lines().count(), 4);
    }
}
