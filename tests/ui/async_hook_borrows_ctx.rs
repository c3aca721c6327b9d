use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(pre_stop)]
    async fn close(&mut self, ctx: &mut Context<Self>) {}
}

fn main() {}
