use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[periodic(period = 1.0)]
    #[on(post_start)]
    fn tick(&mut self) {}
}

fn main() {}
