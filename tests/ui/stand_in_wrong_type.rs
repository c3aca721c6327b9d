use microagent::prelude::*;

#[derive(MicroAgent)]
#[microagent(stand_in = 42)]
struct Agent {
    url: String,
}

#[microagent::hooks]
impl Agent {
    #[on(pre_start)]
    async fn connect(&mut self) {
        let _ = &self.url;
    }
}

fn main() {}
