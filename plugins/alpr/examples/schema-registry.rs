// SPDX-License-Identifier: MIT OR Apache-2.0
//! A small Confluent-compatible Schema Registry (the REST subset kafkasink and standard
//! consumers use), for trying the stack on one machine without Java: `scripts/demo --services`
//! starts it beside tansu and s3s-fs. Schemas are kept in memory until the process exits.
//!
//!   schema-registry [PORT]        (listens on 127.0.0.1:PORT, default 8081)

#[path = "../tests/common/registry.rs"]
mod registry;

fn main() {
    let port = match std::env::args().nth(1).map(|p| p.parse::<u16>()) {
        None => 8081,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!("schema-registry: PORT: expected a TCP port number (1-65535): {e}");
            std::process::exit(2);
        }
    };
    let _registry = registry::Registry::start_on(port);
    eprintln!("schema-registry: listening on http://127.0.0.1:{port}");
    loop {
        std::thread::park();
    }
}
