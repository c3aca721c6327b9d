use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(server)]
    fn serve(&self) -> u32 {
        0
    }
}

fn main() {}
