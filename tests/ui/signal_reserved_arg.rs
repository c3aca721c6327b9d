use microagent::bus::Signal;
use serde::{Deserialize, Serialize};

#[derive(Signal, Serialize, Deserialize)]
struct UserCreated {
    user_id: u64,
    sender: String,
}

#[derive(Signal, Serialize, Deserialize)]
struct Renamed {
    #[serde(rename = "signal")]
    kind: String,
}

#[derive(Signal, Serialize, Deserialize)]
struct Positional(u64);

fn main() {}
