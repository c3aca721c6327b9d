use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(pre_start)]
    fn open(&mut self) -> Result<(), u32> {
        Ok(())
    }
}

fn main() {}
