use microagent::prelude::*;

#[derive(Default, MicroAgent)]
struct Agent;

fn main() {}
