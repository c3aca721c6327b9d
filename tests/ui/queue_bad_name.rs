use microagent::broker::Queue;
use serde::{Deserialize, Serialize};

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "mail queue")]
struct Mail {
    to: String,
}

#[derive(Queue, Serialize, Deserialize, Clone)]
struct Pair(u32, u32);

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "save", topics = ["m.*"])]
struct Save {
    text: String,
}

fn main() {}
