use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(post_start)]
    fn announce(&mut self, url: String) {}
}

fn main() {}
