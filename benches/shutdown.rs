//! Time from SIGTERM to process exit for the idle `http` example.
//!
//! `cargo bench --bench shutdown [-- RUNS]` (RUNS defaults to 25, at least
//! 20). Builds the example in release mode, then for each run: starts it on
//! a free port, waits until `/health/ready` answers 200, sends SIGTERM and
//! times until the process has exited. The last line is
//! `shutdown median ms: X`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn example_path() -> PathBuf {
    // The bench runs from target/release/deps/; examples are beside deps/.
    let mut path = std::env::current_exe().expect("bench path");
    path.pop();
    path.pop();
    path.push("examples");
    path.push("http");
    path
}

/// Whether `GET /health/ready` answers 200.
fn ready(system: &actix_rt::SystemRunner, addr: &str) -> bool {
    system.block_on(async {
        // A fresh client each time: no pooled connection outlives the probe.
        let client = awc::Client::default();
        matches!(
            client.get(format!("http://{addr}/health/ready")).send().await,
            Ok(response) if response.status() == 200
        )
    })
}

fn one_run(system: &actix_rt::SystemRunner) -> Duration {
    let mut child = Command::new(example_path())
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the http example runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the example prints its address")
            .expect("stdout");
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.to_owned();
        }
    };
    while !ready(system, &addr) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    // SAFETY: `kill` only sends a signal to our own child process.
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(sent, 0, "SIGTERM sent");
    let status = child.wait().expect("the example exits");
    let elapsed = start.elapsed();
    assert!(status.success(), "graceful exit, got {status}");
    elapsed
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("RUNS is a whole number"))
        .unwrap_or(25)
        .max(20);
    let built = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--example", "http"])
        .status()
        .expect("cargo builds the example");
    assert!(built.success(), "the http example builds");

    let system = actix_rt::System::new();
    let mut times: Vec<Duration> = (0..runs).map(|_| one_run(&system)).collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{runs} runs: min {:.1} ms, max {:.1} ms",
        ms(times[0]),
        ms(times[runs - 1])
    );
    println!("shutdown median ms: {:.1}", ms(times[runs / 2]));
}
