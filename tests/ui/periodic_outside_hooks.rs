use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {}

impl Agent {
    #[periodic(period = 1.0)]
    fn tick(&mut self) {}
}

fn main() {}
