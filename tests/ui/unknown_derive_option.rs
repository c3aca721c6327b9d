use microagent::prelude::*;

#[derive(Default, MicroAgent)]
#[microagent(title = "mailer")]
struct Agent;

#[microagent::hooks]
impl Agent {}

fn main() {}
