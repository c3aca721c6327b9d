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
