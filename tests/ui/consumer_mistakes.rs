use microagent::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(microagent::broker::Queue, Serialize, Deserialize, Clone)]
struct Mail {
    to: String,
}

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[consumer(Mail)]
    fn no_message(&mut self) {}

    #[consumer(Mail)]
    fn borrowed(&mut self, mail: &Mail) {
        let _ = mail;
    }

    #[consumer(Mail)]
    #[receiver(Mail)]
    fn both(&mut self, mail: Mail) {
        let _ = mail;
    }

    #[consumer(Mail, retries = 3)]
    fn unknown_option(&mut self, mail: Mail) {
        let _ = mail;
    }

    #[consumer(Mail, attempts = 0)]
    fn no_attempt(&mut self, mail: Mail) {
        let _ = mail;
    }

    #[consumer(Mail)]
    fn too_many(&mut self, mail: Mail, extra: u32) {
        let _ = (mail, extra);
    }
}

fn main() {}
