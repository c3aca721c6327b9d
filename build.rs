//! Tells the tests which services this build can reach. A test that needs
//! one that is not there is compiled as ignored, so that the runner's
//! summary shows it as ignored instead of counting it as passed; `.ci/run`
//! sets every variable, so there all of them run.

fn main() {
    let services = [
        ("REDIS_URL", "service_redis"),
        ("AMQP_URL", "service_amqp"),
        ("NATS_URL", "service_nats"),
        ("INTEROP_PYTHON", "service_python"),
    ];
    println!("cargo::rerun-if-changed=build.rs");
    for (variable, cfg) in services {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={variable}");
        if std::env::var_os(variable).is_some_and(|value| !value.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
