use microagent::prelude::*;

/// Not a number of seconds above 0.
const NEVER: f64 = -1.0;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[periodic(period = NEVER)]
    fn tick(&mut self) {}
}

fn main() {}
