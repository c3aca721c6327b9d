use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(pre_start)]
    const RETRIES: u32 = 3;
}

fn main() {}
