//! The benchmark suite at tiny size, in-process: every scenario runs and produces figures.
//! No timing is asserted (CI machines vary); `BENCHMARKS.md` says how to read the real run.

use std::path::PathBuf;

use paygate::bench::{self, Options, Size, SCENARIOS};

#[test]
fn every_scenario_produces_figures_at_tiny_size() {
    let out = std::env::temp_dir().join(format!("paygate-bench-smoke-{}.json", std::process::id()));
    let options = Options {
        size: Size::Tiny,
        out: Some(out.clone()),
        // The subscribers scenario holds its streams in a child `paygate bench __stream-client`.
        client_exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_paygate"))),
        database_url: None,
    };
    let outcome = bench::run_blocking("all", &options).expect("every scenario runs");

    assert_eq!(outcome.path, out);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("the JSON file is written"))
            .expect("the JSON file parses");
    assert_eq!(written, outcome.json);
    for scenario in SCENARIOS {
        let figures = &outcome.json["scenarios"][scenario]["figures"];
        assert!(
            figures.as_object().is_some_and(|f| !f.is_empty()),
            "{scenario} produced no figures: {}",
            outcome.json["scenarios"][scenario]
        );
        assert!(
            outcome.rows.iter().any(|r| r.scenario == scenario),
            "{scenario} has no summary row"
        );
    }
    assert!(outcome.json["fsync"]["append"]["ops"].as_u64() > Some(0));
    let _ = std::fs::remove_file(out);
}
