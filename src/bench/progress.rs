//! The live progress line on stderr, rewritten in place with `\r`.

use std::{
    io::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

/// Counters a phase updates; a ticker task prints them four times a second.
pub struct Progress {
    label: String,
    planned: Duration,
    started: Instant,
    done: AtomicU64,
    errors: AtomicU64,
    stop: CancellationToken,
}

impl Progress {
    /// Starts the ticker on the current runtime. `planned` is the expected length of the phase
    /// (zero: unknown).
    pub fn start(label: impl Into<String>, planned: Duration) -> Arc<Self> {
        let progress = Arc::new(Self {
            label: label.into(),
            planned,
            started: Instant::now(),
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stop: CancellationToken::new(),
        });
        let weak = Arc::downgrade(&progress);
        let stop = progress.stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                // A phase that failed without `finish` drops its Progress: stop quietly.
                let Some(ticker) = weak.upgrade() else { return };
                let now = Instant::now();
                let done = ticker.done.load(Ordering::Relaxed);
                let dt = now.duration_since(last.0).as_secs_f64();
                let rate = if dt > 0.0 {
                    (done - last.1.min(done)) as f64 / dt
                } else {
                    0.0
                };
                last = (now, done);
                ticker.print(rate, false);
            }
        });
        progress
    }

    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops the ticker and leaves the final line (average rate) on the console.
    pub fn finish(&self) {
        self.stop.cancel();
        let secs = self.started.elapsed().as_secs_f64();
        let done = self.done.load(Ordering::Relaxed);
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        self.print(rate, true);
    }

    fn print(&self, rate: f64, last: bool) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let planned = if self.planned.is_zero() {
            String::new()
        } else {
            format!("/{:.0}s", self.planned.as_secs_f64())
        };
        let errors = self.errors.load(Ordering::Relaxed);
        let line = format!(
            "  {:<40} {elapsed:6.1}s{planned:<5} {:>10} done  {:>12}{}  {errors} errors",
            self.label,
            super::report::group(
                i64::try_from(self.done.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
            ),
            super::report::fmt_rate(rate),
            if last { " avg" } else { "    " },
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}");
        if last {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
