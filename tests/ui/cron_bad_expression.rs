use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[cron("0 25 * * *")]
    fn report(&mut self) {}
}

fn main() {}
