use microagent::bus::Signal;
use serde::{Deserialize, Serialize};

#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "user:created")]
struct UserCreated {
    user_id: u64,
}

#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "response")]
struct Answer {
    value: u64,
}

fn main() {}
