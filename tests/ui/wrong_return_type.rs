use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(pre_start)]
    fn open(&mut self) -> u32 {
        0
    }

    #[on(pre_stop)]
    async fn close(&mut self) -> Option<()> {
        None
    }
}

fn main() {}
