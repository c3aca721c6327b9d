use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[periodic(timeout = 1.0)]
    fn tick(&mut self) {}
}

fn main() {}
