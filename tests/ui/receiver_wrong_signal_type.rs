use microagent::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(microagent::bus::Signal, Serialize, Deserialize)]
struct UserCreated {
    user_id: u64,
}

#[derive(microagent::bus::Signal, Serialize, Deserialize)]
struct UserDeleted {
    user_id: u64,
}

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[receiver(UserCreated)]
    fn mismatch(&mut self, signal: UserDeleted) {
        let _ = signal;
    }
}

fn main() {}
