use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(pre_strat)]
    fn open(&mut self) {}
}

fn main() {}
