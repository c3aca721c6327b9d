use microagent::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(microagent::bus::Signal, Serialize, Deserialize)]
struct UserCreated {
    user_id: u64,
}

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[receiver(UserCreated)]
    fn no_signal(&mut self) {}

    #[receiver(UserCreated)]
    fn borrowed(&mut self, signal: &UserCreated) {
        let _ = signal;
    }

    #[receiver(UserCreated)]
    #[on(pre_start)]
    fn both(&mut self, signal: UserCreated) {
        let _ = signal;
    }

    #[receiver(UserCreated, retries = 3)]
    fn unknown_option(&mut self, signal: UserCreated) {
        let _ = signal;
    }

    #[receiver(UserCreated)]
    fn too_many(&mut self, signal: UserCreated, sender: String, extra: u32) {
        let _ = (signal, sender, extra);
    }
}

fn main() {}
