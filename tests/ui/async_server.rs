use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(server)]
    async fn serve(&mut self) {}
}

fn main() {}
