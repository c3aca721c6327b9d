//! Spawning the example and fixture binaries as real processes.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a test waits for a process before calling it hung. A hang
/// detector, not a performance threshold: the processes answer in well
/// under a second when they work.
pub(crate) const HANG: Duration = Duration::from_secs(60);

/// `cargo test` builds the examples next to the test binaries' `deps/`.
pub(crate) fn example(name: &str) -> PathBuf {
    let mut path = std::env::current_exe().expect("test binary path");
    path.pop();
    path.pop();
    path.push("examples");
    path.push(name);
    path
}

/// Takes every `MICROAGENT_*` variable of this process out of `command`'s
/// environment: the configuration reads them, and a test gives its own.
pub(crate) fn without_configuration(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars() {
        if name.starts_with("MICROAGENT_") {
            command.env_remove(name);
        }
    }
    command
}

/// A running example binary, its stdout lines and its stderr.
pub(crate) struct Proc {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// The threads copying stdout and stderr; they end at the pipes' EOF.
    readers: Vec<std::thread::JoinHandle<()>>,
    /// Every stdout line read so far.
    pub(crate) seen: Vec<String>,
}

impl Proc {
    pub(crate) fn spawn(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(example(name));
        command
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info");
        Proc::start(command)
    }

    /// Runs any command, its stdout and stderr piped.
    pub(crate) fn start(mut command: Command) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let out = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().expect("piped stderr");
        let err = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            child,
            lines,
            stderr,
            readers: vec![out, err],
            seen: Vec::new(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Blocks until a stdout line matches, and returns it.
    pub(crate) fn wait_line(&mut self, matches: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            match self
                .lines
                .recv_timeout(HANG.saturating_sub(start.elapsed()))
            {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no matching line within {HANG:?}; stdout so far: {:?}\nstderr: {}",
                    self.seen,
                    self.stderr()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the process closed stdout before a matching line; stdout: {:?}\nstderr: {}",
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// Takes the stdout lines that arrived, without blocking.
    pub(crate) fn drain_lines(&mut self) -> &[String] {
        loop {
            match self.lines.try_recv() {
                Ok(line) => self.seen.push(line),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return &self.seen,
            }
        }
    }

    /// Sends a real signal (`TERM`, `INT`...) with `kill(1)`.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// The exit code, once the process has exited (`None` while it runs).
    pub(crate) fn try_code(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .expect("try_wait")
            .map(|status| status.code().unwrap_or(-1))
    }

    /// Waits for the process to exit and returns its exit code, with all
    /// of its output read.
    pub(crate) fn wait_code(&mut self) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(code) = self.try_code() {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                self.drain_lines();
                return code;
            }
            if start.elapsed() > HANG {
                let _ = self.child.kill();
                panic!("still running after {HANG:?}; stderr: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
