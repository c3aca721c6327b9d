//! Bookkeeping shared by the benches: a countdown of the events of one
//! round, thread-local and the same for both sides of a comparison, so
//! neither side's actor carries more than the work it measures.

use std::cell::Cell;
use std::rc::Rc;

use tokio::sync::Notify;

thread_local! {
    /// Events still to come in the current round, and who waits for the last.
    static LEFT: Cell<usize> = const { Cell::new(0) };
    static DONE: Rc<Notify> = Rc::new(Notify::new());
}

/// What to await for the last event of a round.
pub(crate) fn done() -> Rc<Notify> {
    DONE.with(Rc::clone)
}

/// Starts a round of `n` events.
pub(crate) fn expect(n: usize) {
    LEFT.set(n);
}

/// One event of the round happened; the last one wakes the round.
pub(crate) fn one_done() {
    let left = LEFT.get() - 1;
    LEFT.set(left);
    if left == 0 {
        DONE.with(|done| done.notify_one());
    }
}

/// Times a round of `n` events: `send` runs, then the last event arrives.
#[allow(dead_code)] // not every bench has pairs timed this way
pub(crate) async fn timed<F: std::future::Future>(n: usize, send: F) -> std::time::Duration {
    expect(n);
    let done = done();
    let finished = done.notified();
    let start = std::time::Instant::now();
    send.await;
    finished.await;
    start.elapsed()
}

/// Prints both sides' rates of `n` `what`s and returns ours / bare.
#[allow(dead_code)]
pub(crate) fn report(
    (ours_name, ours): (&str, std::time::Duration),
    (bare_name, bare): (&str, std::time::Duration),
    n: usize,
    what: &str,
) -> f64 {
    let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!(
        "{ours_name}: {n} {what} in {ours:?}: {:.0} {what}/s",
        rate(ours)
    );
    println!(
        "{bare_name}: {n} {what} in {bare:?}: {:.0} {what}/s",
        rate(bare)
    );
    rate(ours) / rate(bare)
}

/// Sends messages `0..n` with `send`, `width` sends in flight at a time
/// (each of `width` lanes sends its share one after another).
#[allow(dead_code)] // the queue benches' producers
pub(crate) async fn in_flight<F, Fut>(n: usize, width: usize, send: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let send = &send;
    futures_util::future::join_all((0..width.min(n)).map(|lane| async move {
        for i in (lane..n).step_by(width) {
            send(i as u64).await;
        }
    }))
    .await;
}

/// The observability pairs: `round` run `rounds` times with timing on
/// (feature `metrics`) and as often off, each first every other round
/// (the first of two rounds runs a few percent faster); the best rate
/// timed over the best rate untimed.
#[cfg(feature = "metrics")]
#[allow(dead_code)] // the benches with an observability line use it
pub(crate) async fn timed_over_untimed<F, Fut>(rounds: usize, mut round: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::time::Duration>,
{
    use std::time::Duration;
    let (mut with, mut without) = (Duration::MAX, Duration::MAX);
    for round_number in 0..rounds {
        let first = round_number % 2 == 0;
        for on in [first, !first] {
            microagent::metrics::time_runs(on);
            let took = round().await;
            match on {
                true => with = with.min(took),
                false => without = without.min(took),
            }
        }
    }
    without.as_secs_f64() / with.as_secs_f64()
}
