//! One live progress line per phase on stderr (`indicatif`): elapsed time, items done, rate,
//! errors. When stderr is not a terminal (CI) the bar is hidden and only the final line is
//! printed.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    label: String,
    started: Instant,
    errors: AtomicU64,
}

impl Progress {
    /// `planned`: the expected length of the phase (zero: unknown), shown after the elapsed time.
    pub fn start(label: impl Into<String>, planned: Duration) -> Arc<Self> {
        let label = label.into();
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        let planned = if planned.is_zero() {
            String::new()
        } else {
            format!("/{:.0}s", planned.as_secs_f64())
        };
        let template = format!(
            "  {{prefix:40}} {{elapsed:>4}}{planned:<5} {{human_pos:>10}} done {{per_sec:>14}}  {{msg}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        bar.set_prefix(label.clone());
        bar.set_message("0 errors");
        bar.enable_steady_tick(Duration::from_millis(250));
        Arc::new(Self {
            bar,
            label,
            started: Instant::now(),
            errors: AtomicU64::new(0),
        })
    }

    pub fn add(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Sets the count (phases that read progress from a server's counter).
    pub fn set(&self, n: u64) {
        self.bar.set_position(n);
    }

    pub fn error(&self) {
        let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.set_message(format!("{n} errors"));
    }

    /// Leaves one final line (average rate) on the console.
    pub fn finish(&self) {
        let secs = self.started.elapsed().as_secs_f64();
        let done = self.bar.position();
        self.bar.finish_and_clear();
        eprintln!(
            "  {:<40} {secs:6.1}s {:>10} done {:>12} avg  {} errors",
            self.label,
            crate::report::group(i64::try_from(done).unwrap_or(i64::MAX)),
            crate::report::fmt_rate(if secs > 0.0 { done as f64 / secs } else { 0.0 }),
            self.errors.load(Ordering::Relaxed),
        );
    }
}
