use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[periodic(period = 0)]
    fn tick(&mut self) {}
}

fn main() {}
