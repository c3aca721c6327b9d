//! What many tasks ask of a server at about the same time, applied in one
//! round trip (a "group commit"): settlements of one consumer, for one.
//!
//! A [`Gather`] has one task. The first request that finds it idle is
//! applied at once, alone (a lone consumer waits for nothing); requests
//! that come while a batch is on the wire wait for the next one, which
//! takes them all (up to a bound). Under load a round trip carries as many
//! requests as arrived during the previous one.

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

/// A request and who waits for it to be applied.
type Request<T> = (T, oneshot::Sender<()>);

/// Gathers requests of type `T` into batches for one task to apply.
pub(crate) struct Gather<T> {
    requests: mpsc::UnboundedSender<Request<T>>,
}

impl<T: Send + 'static> Gather<T> {
    /// Starts the task (on the current arbiter) that applies up to `most`
    /// requests at a time with `apply`, which resolves once the server has
    /// the whole batch (it keeps trying through passing failures). The task
    /// ends once the `Gather` is dropped and every request is applied.
    pub(crate) fn start<F>(most: usize, mut apply: F) -> Gather<T>
    where
        F: FnMut(Vec<T>) -> BoxFuture<'static, ()> + 'static,
    {
        let (requests, mut arriving) = mpsc::unbounded_channel::<Request<T>>();
        actix_rt::spawn(async move {
            let mut waiting = Vec::with_capacity(most);
            while arriving.recv_many(&mut waiting, most.max(1)).await > 0 {
                let (batch, done): (Vec<T>, Vec<_>) = waiting.drain(..).unzip();
                apply(batch).await;
                for done in done {
                    let _ = done.send(());
                }
            }
        });
        Gather { requests }
    }

    /// Asks for `request` to be applied; resolves once it is (or at once
    /// when the task is gone with its System: then nothing was applied).
    pub(crate) fn submit(&self, request: T) -> impl std::future::Future<Output = ()> + 'static {
        let (done, applied) = oneshot::channel();
        let sent = self.requests.send((request, done)).is_ok();
        async move {
            if sent {
                let _ = applied.await;
            }
        }
    }
}

impl<T> Clone for Gather<T> {
    fn clone(&self) -> Self {
        Gather {
            requests: self.requests.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Requests made while a batch is applied go together in the next
    /// one; the first goes alone; every request resolves after its batch.
    #[actix_rt::test]
    async fn requests_that_wait_go_together() {
        let batches = Rc::new(RefCell::new(Vec::<Vec<u32>>::new()));
        let seen = batches.clone();
        let gather = Gather::start(3, move |batch| {
            seen.borrow_mut().push(batch);
            Box::pin(actix_rt::time::sleep(std::time::Duration::from_millis(20)))
        });
        let first = gather.submit(0);
        actix_rt::task::yield_now().await;
        let rest: Vec<_> = (1..=5).map(|i| gather.submit(i)).collect();
        first.await;
        futures_util::future::join_all(rest).await;
        assert_eq!(*batches.borrow(), vec![vec![0], vec![1, 2, 3], vec![4, 5]]);
    }
}
