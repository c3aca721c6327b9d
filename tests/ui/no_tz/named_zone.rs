use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[cron("@daily", tz = "Europe/Paris")]
    fn report(&mut self) {}
}

fn main() {}
