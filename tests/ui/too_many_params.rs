use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(pre_start)]
    fn open(&mut self, ctx: &mut Context<Self>, retries: u32) {}
}

fn main() {}
