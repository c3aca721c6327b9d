use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(pre_start)]
    fn open() {}
}

fn main() {}
