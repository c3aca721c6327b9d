//! Which agents are alive in each actix System, so that [`run`](crate::run)
//! can stop them all gracefully and wait for their `pre_stop` hooks before it
//! lets the System go.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use actix::WeakRecipient;
use tokio::sync::Notify;

use crate::StopAgent;

/// The live agents of one System.
#[derive(Default)]
pub(crate) struct SystemAgents {
    live: Mutex<Live>,
    changed: Notify,
}

#[derive(Default)]
struct Live {
    next_id: u64,
    agents: HashMap<u64, Entry>,
}

struct Entry {
    name: &'static str,
    stop: WeakRecipient<StopAgent>,
    asked: bool,
}

impl SystemAgents {
    fn lock(&self) -> MutexGuard<'_, Live> {
        // The lock guards plain bookkeeping; a panic elsewhere cannot leave it torn.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many agents are alive.
    pub(crate) fn len(&self) -> usize {
        self.lock().agents.len()
    }

    /// Asks every live agent to stop, then waits until none is left. Agents
    /// started while this runs are asked too.
    pub(crate) async fn stop_all(&self) {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            {
                let mut live = self.lock();
                if live.agents.is_empty() {
                    return;
                }
                for entry in live.agents.values_mut().filter(|e| !e.asked) {
                    entry.asked = true;
                    match entry.stop.upgrade() {
                        Some(agent) => {
                            log::debug!(target: "microagent", "asking agent `{}` to stop", entry.name);
                            agent.do_send(StopAgent);
                        }
                        // No `Addr` left: the agent is already stopping.
                        None => {}
                    }
                }
            }
            changed.await;
        }
    }
}

/// An agent's entry in its System's registry; removes itself when dropped,
/// which happens when the agent's actor is gone.
pub(crate) struct Registration {
    agents: Arc<SystemAgents>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.agents.lock().agents.remove(&self.id);
        self.agents.changed.notify_waiters();
    }
}

/// Registers an agent with the current System.
pub(crate) fn register(name: &'static str, stop: WeakRecipient<StopAgent>) -> Registration {
    let agents = current();
    let id = {
        let mut live = agents.lock();
        live.next_id += 1;
        let id = live.next_id;
        live.agents.insert(
            id,
            Entry {
                name,
                stop,
                asked: false,
            },
        );
        id
    };
    Registration { agents, id }
}

type Systems = Mutex<HashMap<usize, Arc<SystemAgents>>>;

fn systems() -> &'static Systems {
    static SYSTEMS: OnceLock<Systems> = OnceLock::new();
    SYSTEMS.get_or_init(Default::default)
}

thread_local! {
    // Agents are started from arbiter threads; each remembers its System's
    // registry so the global map is looked up once per thread and System.
    static CURRENT: RefCell<Option<(usize, Arc<SystemAgents>)>> = const { RefCell::new(None) };
}

/// The registry of the current System.
///
/// # Panics
/// Outside an actix System, like starting any actor there.
pub(crate) fn current() -> Arc<SystemAgents> {
    let id = actix_rt::System::try_current()
        .expect("microagent: agents must be started inside a running actix System")
        .id();
    CURRENT.with(|cell| {
        let mut cell = cell.borrow_mut();
        match &*cell {
            Some((cached, agents)) if *cached == id => agents.clone(),
            _ => {
                let agents = systems()
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(id)
                    .or_default()
                    .clone();
                *cell = Some((id, agents.clone()));
                agents
            }
        }
    })
}

/// Forgets the registry of a System that has ended.
pub(crate) fn forget(system_id: usize) {
    systems()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&system_id);
    CURRENT.with(|cell| {
        let mut cell = cell.borrow_mut();
        if matches!(&*cell, Some((id, _)) if *id == system_id) {
            *cell = None;
        }
    });
}
