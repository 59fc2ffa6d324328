//! Who runs where: the servers under test (paygate, its emulator, every baseline server) on one
//! CPU, the load (wrk, the suite's own clients, the stream-holding child) on another, where the
//! machine has at least two. Pinning uses `core_affinity`: a child process inherits the CPU set of
//! the thread that spawns it, so servers are spawned from a thread pinned to the server CPU, and
//! the suite's own runtime threads pin themselves to the load CPU as they start.

use std::{
    io,
    process::{Child, Command},
};

use core_affinity::CoreId;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Layout {
    server: Option<CoreId>,
    load: Option<CoreId>,
    why_not: Option<String>,
}

impl Layout {
    /// The first allowed CPU for the servers, the last for the load; none with `BENCH_PIN=0` or
    /// fewer than two CPUs.
    pub fn detect() -> Self {
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let why_not = if std::env::var("BENCH_PIN").is_ok_and(|v| v == "0") {
            Some("BENCH_PIN=0".to_owned())
        } else if cores.len() < 2 {
            Some(format!("{} CPU(s) allowed", cores.len()))
        } else {
            None
        };
        match (why_not, cores.first(), cores.last()) {
            (None, Some(&server), Some(&load)) => Self {
                server: Some(server),
                load: Some(load),
                why_not: None,
            },
            (why, _, _) => Self {
                server: None,
                load: None,
                why_not: Some(why.unwrap_or_else(|| "no CPUs listed".into())),
            },
        }
    }

    /// Pins the calling thread to the load CPU (a no-op without pinning).
    pub fn pin_load_thread(&self) {
        if let Some(core) = self.load {
            core_affinity::set_for_current(core);
        }
    }

    /// Starts a server process on the server CPU.
    pub fn spawn_server(&self, command: &mut Command) -> io::Result<Child> {
        spawn_on(self.server, command)
    }

    /// Starts a load process (wrk, the stream client) on the load CPU.
    pub fn spawn_load(&self, command: &mut Command) -> io::Result<Child> {
        spawn_on(self.load, command)
    }

    /// A tokio runtime whose worker and blocking threads run on the load CPU.
    pub fn load_runtime(&self, threads: usize) -> io::Result<tokio::runtime::Runtime> {
        let load = self.load;
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("bench-load")
            .on_thread_start(move || {
                if let Some(core) = load {
                    core_affinity::set_for_current(core);
                }
            })
            .enable_all()
            .build()
    }

    pub fn json(&self) -> Value {
        let cpu = |c: Option<CoreId>| c.map_or_else(|| "any".into(), |c| c.id.to_string());
        json!({
            "servers_cpu": cpu(self.server),
            "load_cpu": cpu(self.load),
            "pinning": match &self.why_not {
                None => "core_affinity (servers inherit it from the spawning thread)".to_owned(),
                Some(why) => format!("off: {why}"),
            },
        })
    }

    pub fn summary(&self) -> String {
        match (self.server, self.load) {
            (Some(s), Some(l)) => format!("servers on CPU {}, load on CPU {}", s.id, l.id),
            _ => format!(
                "not pinned ({})",
                self.why_not.as_deref().unwrap_or("no CPUs")
            ),
        }
    }
}

fn spawn_on(core: Option<CoreId>, command: &mut Command) -> io::Result<Child> {
    let Some(core) = core else {
        return command.spawn();
    };
    // Spawn from a fresh thread pinned to `core`: the child inherits that thread's CPU set, and
    // the caller's own affinity is left alone.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if !core_affinity::set_for_current(core) {
                    return Err(io::Error::other(format!("cannot pin to CPU {}", core.id)));
                }
                command.spawn()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("spawning thread panicked")))
    })
}
