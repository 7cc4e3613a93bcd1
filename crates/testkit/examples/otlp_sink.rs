//! An OTLP/gRPC trace receiver that counts what it is sent, for the tracing benchmark
//! (`scripts/bench-traces.sh`). Prints `listening <endpoint>`, then, when its standard
//! input closes, `spans <count>`.

#![allow(clippy::print_stdout)]

use std::io::Read as _;

#[tokio::main]
async fn main() {
    let receiver = arqon_testkit::otlp::OtlpReceiver::start_counting().await;
    println!("listening {}", receiver.endpoint());
    // Runs until the script closes our standard input.
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await;
    println!("spans {}", receiver.count());
}
