use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(periodic)]
    async fn refresh(&mut self) {}
}

fn main() {}
