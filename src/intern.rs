//! Names made `'static` once per distinct name, for the process's life:
//! agents' instance names and run-time signals' names, which the
//! registry and the bus keep as `&'static str`.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

/// A `'static` copy of `name`, made once per distinct name.
pub(crate) fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match names.get(name) {
        Some(interned) => interned,
        None => {
            let interned: &'static str = Box::leak(name.to_owned().into_boxed_str());
            names.insert(interned);
            interned
        }
    }
}
