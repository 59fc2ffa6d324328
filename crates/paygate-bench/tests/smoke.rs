//! The benchmark suite at tiny size against the real paygate binary: every scenario runs,
//! produces figures, and the JSON and the charts are written. No timing is asserted (machines
//! vary); BENCHMARKS.md says how to read a real run.
//!
//! Needs the `paygate` binary in the same target dir (`cargo test` at the workspace root builds
//! it for the service's own integration tests; alone: `cargo build -p paygate`), and wrk
//! (`apt-get install -y wrk`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may unwrap

use std::{path::PathBuf, process::Command};

/// `target/<profile>/paygate`, next to this test's own target dir.
fn paygate_binary() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_paygate-bench"));
    let path = bench.with_file_name("paygate");
    assert!(
        path.is_file(),
        "no paygate binary at {}: run `cargo build -p paygate` first (`cargo test` at the \
         workspace root builds it too)",
        path.display()
    );
    path
}

fn wrk_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("wrk").is_file()))
}

#[test]
fn every_scenario_produces_figures_and_charts_at_tiny_size() {
    let paygate = paygate_binary();
    assert!(
        wrk_installed(),
        "wrk is not installed (the webhook scenarios use it): apt-get install -y wrk"
    );
    let dir = std::env::temp_dir().join(format!("paygate-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("smoke.json");
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_paygate-bench"))
        .args(["all", "--size", "tiny", "--compare", "none", "--out"])
        .arg(&out)
        .arg("--paygate")
        .arg(&paygate)
        .output()
        .expect("paygate-bench runs");
    // Shown by the test harness only when the test fails (or with --nocapture).
    println!("{}", String::from_utf8_lossy(&output.stdout));
    println!("{}", String::from_utf8_lossy(&output.stderr));
    println!(
        "paygate-bench all --size tiny took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        output.status.success(),
        "paygate-bench all --size tiny: {}",
        output.status
    );

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("the JSON file is written"))
            .expect("the JSON file parses");
    assert_eq!(json["size"], "tiny");
    for scenario in [
        "create-overhead",
        "create-throughput",
        "webhook-ingest",
        "delivery-latency",
        "subscribers",
        "catch-up",
    ] {
        let entry = &json["scenarios"][scenario];
        assert!(
            entry["figures"].as_object().is_some_and(|f| !f.is_empty()),
            "{scenario} produced no figures: {entry}"
        );
        assert!(
            json["summary"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["scenario"] == scenario),
            "{scenario} has no summary row"
        );
        assert!(
            entry["ratios"].as_array().is_some_and(|r| !r.is_empty()),
            "{scenario} has no ratio"
        );
    }
    assert!(json["fsync"]["append"]["ops"].as_u64() > Some(0));
    assert!(json["machine"]["loadavg_at_start"].is_string());
    // Nothing failed or went missing, whatever the timings.
    for row in json["summary"].as_array().unwrap() {
        assert!(
            !["FAILED", "ERRORS"].contains(&row["verdict"].as_str().unwrap_or("")),
            "{row}"
        );
        if row["target"] == "all" || row["target"] == "all, once" {
            assert_eq!(row["verdict"], "meets", "{row}");
        }
    }
    let charts: Vec<PathBuf> = json["charts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| PathBuf::from(c.as_str().unwrap()))
        .collect();
    for name in [
        "webhook-ingest.throughput",
        "webhook-ingest.latency-cdf",
        "create-overhead.latency-cdf",
        "delivery-latency.latency-cdf",
        "subscribers.memory-per-stream",
        "catch-up.progress",
    ] {
        let path = dir.join(format!("smoke.{name}.svg"));
        assert!(
            charts.contains(&path),
            "{} not listed in {charts:?}",
            path.display()
        );
        let svg = std::fs::read_to_string(&path).expect("the chart is written");
        assert!(svg.contains("<svg"), "{} is not an SVG", path.display());
    }
    let _ = std::fs::remove_dir_all(dir);
}
