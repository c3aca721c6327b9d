use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

#[microagent::hooks]
impl Agent {
    #[on(server, restarts = 3, within = 0)]
    fn serve(&self) -> impl std::future::Future<Output = ()> {
        async {}
    }
}

fn main() {}
