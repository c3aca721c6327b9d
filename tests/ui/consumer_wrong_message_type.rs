use microagent::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(microagent::broker::Queue, Serialize, Deserialize, Clone)]
struct Mail {
    to: String,
}

#[derive(microagent::broker::Queue, Serialize, Deserialize, Clone)]
struct Sms {
    to: String,
}

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[consumer(Mail)]
    fn mismatch(&mut self, sms: Sms) {
        let _ = sms;
    }
}

fn main() {}
