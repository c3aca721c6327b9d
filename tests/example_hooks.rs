//! Runs the `hooks` example as a real process.

use std::path::PathBuf;
use std::process::Command;

/// `cargo test` builds the examples next to the test binaries' `deps/`.
fn example(name: &str) -> PathBuf {
    let mut path = std::env::current_exe().expect("test binary path");
    path.pop(); // the test binary
    path.pop(); // deps/
    path.push("examples");
    path.push(name);
    path
}

#[test]
fn the_hooks_example_runs_its_three_hooks_in_order_and_exits_0() {
    let output = Command::new(example("hooks"))
        .env("RUST_LOG", "info")
        .output()
        .expect("the hooks example runs (cargo test builds it)");
    assert!(output.status.success(), "exit status: {}", output.status);
    let log = String::from_utf8_lossy(&output.stderr);
    let position = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from the log:\n{log}"))
    };
    let (one, two, three) = (
        position("Called handler 1"),
        position("Called handler 2"),
        position("Called handler 3"),
    );
    assert!(one < two && two < three, "hooks out of order:\n{log}");
    assert_eq!(log.matches("Called handler 3").count(), 1);
}
