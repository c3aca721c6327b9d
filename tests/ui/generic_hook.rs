use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(pre_start)]
    fn open<T: Default>(&mut self) {}
}

fn main() {}
