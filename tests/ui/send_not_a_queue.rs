use microagent::broker::Broker;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Mail {
    to: String,
}

fn main() {
    microagent::run(async {
        let _ = Broker::current()
            .send(Mail { to: "a".into() })
            .await;
    });
}
