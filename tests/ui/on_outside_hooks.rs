use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {}

impl Agent {
    #[on(pre_start)]
    fn open(&mut self) {}
}

fn main() {}
