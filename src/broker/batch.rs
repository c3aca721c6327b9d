//! What many tasks ask of a server at about the same time, applied in one
//! round trip (a "group commit"): settlements of one consumer, for one.
//!
//! A [`Gather`] has one task. The first request that finds it idle is
//! applied at once, alone (a lone consumer waits for nothing); requests
//! that come while a batch is on the wire wait for the next one, which
//! takes them all (up to a bound). Under load a round trip carries as many
//! requests as arrived during the previous one.

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

/// Gathers requests of type `T` into batches for one task to apply. A
/// request says it was applied by being dropped (it may hold a guard).
pub(crate) struct Gather<T> {
    requests: mpsc::UnboundedSender<T>,
}

impl<T: Send + 'static> Gather<T> {
    /// Starts the task (on the current arbiter) that applies up to `most`
    /// requests at a time with `apply`, which resolves once the server has
    /// the whole batch (it keeps trying through passing failures) and drops
    /// the batch then. The task ends once every `Gather` of it is dropped
    /// and every request is applied.
    pub(crate) fn start<F>(most: usize, mut apply: F) -> Gather<T>
    where
        F: FnMut(Vec<T>) -> BoxFuture<'static, ()> + 'static,
    {
        let (requests, mut arriving) = mpsc::unbounded_channel::<T>();
        actix_rt::spawn(async move {
            let mut waiting = Vec::with_capacity(most);
            while arriving.recv_many(&mut waiting, most.max(1)).await > 0 {
                apply(std::mem::take(&mut waiting)).await;
            }
        });
        Gather { requests }
    }

    /// Asks for `request` to be applied with the next batch. When the task
    /// is gone with its System, the request is dropped unapplied.
    pub(crate) fn submit(&self, request: T) {
        let _ = self.requests.send(request);
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
    use tokio::sync::oneshot;

    /// Requests made while a batch is applied go together in the next
    /// one; the first goes alone; each is dropped once its batch applied.
    #[actix_rt::test]
    async fn requests_that_wait_go_together() {
        let batches = Rc::new(RefCell::new(Vec::<Vec<u32>>::new()));
        let seen = batches.clone();
        let gather = Gather::start(3, move |batch: Vec<(u32, oneshot::Sender<()>)>| {
            seen.borrow_mut()
                .push(batch.iter().map(|(n, _)| *n).collect());
            Box::pin(async move {
                actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
                drop(batch);
            })
        });
        let request = |n| {
            let (done, applied) = oneshot::channel();
            gather.submit((n, done));
            applied
        };
        let first = request(0);
        actix_rt::task::yield_now().await;
        let rest: Vec<_> = (1..=5).map(request).collect();
        // Dropped (not sent): applied.
        assert!(first.await.is_err());
        for applied in futures_util::future::join_all(rest).await {
            assert!(applied.is_err());
        }
        assert_eq!(*batches.borrow(), vec![vec![0], vec![1, 2, 3], vec![4, 5]]);
    }
}
