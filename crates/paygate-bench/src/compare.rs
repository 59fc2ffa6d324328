//! This run's ratios against a recorded run's (by default the JSON file this run replaces, e.g.
//! `bench-results/all.json`): a ratio more than 10 % worse is flagged `REGRESSED`.
//!
//! A recorded file of this suite carries its ratios under `ratios`. The file the in-process
//! suite (`paygate bench`, before the workspace split) wrote has none; the comparable ones are
//! derived from its figures, and flagged as taken with the old method (in-process clients).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::{
    report::{fmt_ratio, Ratio, Row},
    Size,
};

/// How much worse than recorded a ratio may be before it is flagged.
const TOLERANCE: f64 = 0.10;

pub struct Comparison {
    pub rows: Vec<Row>,
    pub json: Value,
}

/// The recorded run: `option` (`none`: no comparison), else the output file if it exists.
pub fn load_reference(option: Option<&Path>, out: &Path) -> Option<(PathBuf, Value)> {
    let path = match option {
        Some(p) if p.as_os_str() == "none" => return None,
        Some(p) => p.to_path_buf(),
        None => out.to_path_buf(),
    };
    let text = std::fs::read(&path).ok()?;
    let value: Value = serde_json::from_slice(&text).ok()?;
    Some((path, value))
}

/// The recorded ratios: (key, value, better, note).
fn recorded(reference: &Value) -> Vec<(String, f64, String, &'static str)> {
    if let Some(list) = reference["ratios"].as_array() {
        return list
            .iter()
            .filter_map(|r| {
                Some((
                    r["key"].as_str()?.to_owned(),
                    r["value"].as_f64()?,
                    r["better"].as_str()?.to_owned(),
                    "",
                ))
            })
            .collect();
    }
    // The in-process suite's file.
    let s = &reference["scenarios"];
    let f = |scenario: &str, path: &[&str]| {
        let mut v = &s[scenario]["figures"];
        for p in path {
            v = &v[*p];
        }
        v.as_f64()
    };
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    };
    const OLD: &str = "recorded by the in-process suite (clients inside paygate's process)";
    let candidates = [
        (
            "create_overhead_p50_ratio",
            div(
                f("create-overhead", &["paygate", "p50_us"]),
                f("create-overhead", &["direct", "p50_us"]),
            ),
            "lower",
        ),
        (
            "create_throughput_ratio",
            f("create-throughput", &["ratio"]),
            "higher",
        ),
        (
            "ingest_sqlite_to_floor",
            f("webhook-ingest", &["ratio_sqlite_to_raw"]),
            "higher",
        ),
        (
            "ingest_sqlite_p99_to_floor_p99",
            div(
                f(
                    "webhook-ingest",
                    &["sqlite", "load", "latency_2xx", "p99_us"],
                ),
                f("webhook-ingest", &["raw", "load", "latency_2xx", "p99_us"]),
            ),
            "lower",
        ),
        (
            "delivery_p99_to_post_p99",
            div(
                f("delivery-latency", &["delivery", "p99_us"]),
                f("delivery-latency", &["post", "latency_2xx", "p99_us"]),
            ),
            "lower",
        ),
        (
            "subscribers_memory_ratio",
            f("subscribers", &["ratio_marginal"]),
            "lower",
        ),
    ];
    candidates
        .into_iter()
        .filter_map(|(k, v, b)| Some((k.to_owned(), v?, b.to_owned(), OLD)))
        .collect()
}

pub fn compare(reference: Option<&(PathBuf, Value)>, size: Size, ratios: &[Ratio]) -> Comparison {
    let skipped = |why: String| Comparison {
        rows: Vec::new(),
        json: json!({ "skipped": why }),
    };
    let Some((path, reference)) = reference else {
        return skipped("no recorded run (pass --compare FILE)".into());
    };
    let recorded_size = reference["size"].as_str().unwrap_or("?");
    if recorded_size != size.name() {
        return skipped(format!(
            "{} was recorded at size {recorded_size}, this run is {}",
            path.display(),
            size.name()
        ));
    }
    let old = recorded(reference);
    let mut rows = Vec::new();
    let mut entries = Vec::new();
    for r in ratios {
        let Some((_, was, better, note)) = old.iter().find(|(k, ..)| *k == r.key) else {
            entries.push(json!({"key": r.key, "now": r.value, "recorded": null}));
            continue;
        };
        let change = if *was == 0.0 { f64::NAN } else { r.value / was };
        let worse = match better.as_str() {
            "higher" => change < 1.0 - TOLERANCE,
            _ => change > 1.0 + TOLERANCE,
        };
        let better_by = match better.as_str() {
            "higher" => change > 1.0 + TOLERANCE,
            _ => change < 1.0 - TOLERANCE,
        };
        let verdict = if worse {
            "REGRESSED"
        } else if better_by {
            "improved"
        } else {
            "same"
        };
        rows.push(
            Row::new(
                "comparison",
                format!("{} ({better} is better)", r.what),
                format!("{:.3}", r.value),
            )
            .baseline(format!("recorded {was:.3}"))
            .ratio(change)
            .verdict(verdict),
        );
        entries.push(json!({
            "key": r.key, "what": r.what, "now": r.value, "recorded": was,
            "better": better, "change": fmt_ratio(change), "verdict": verdict,
            "note": note,
        }));
    }
    Comparison {
        rows,
        json: json!({
            "recorded": path.display().to_string(),
            "recorded_started": reference["started"],
            "tolerance": TOLERANCE,
            "ratios": entries,
        }),
    }
}
