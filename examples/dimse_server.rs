//! Embedding the DICOM server: an archive, a DIMSE server over it, and a subscriber to its
//! events (what routing rules or AI hooks would listen to).
//!
//! Run with `cargo run -p pacs-examples --example dimse_server -- [DATA_DIR] [PORT]`, then for
//! example `storescu -aec PACS 127.0.0.1 11112 image.dcm`; Ctrl-C stops it.

use std::net::SocketAddr;
use std::sync::Arc;

use pacs_net::dimse::{DimseServer, Event, ServerConfig};
use pacs_store::{Archive, ArchiveConfig};

async fn run(data_dir: &std::path::Path, port: u16, shutdown: impl std::future::Future<Output = ()>) -> Result<(), Box<dyn std::error::Error>> {
    let archive = Arc::new(Archive::open(data_dir, ArchiveConfig::default())?);
    let config = ServerConfig { ae_title: "PACS".into(), ..ServerConfig::default() };
    let server = DimseServer::bind(SocketAddr::from(([127, 0, 0, 1], port)), archive, config).await?;
    println!("listening on {}", server.local_addr()?);

    // Events arrive as associations open and close and instances are stored.
    let mut events = server.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            match event {
                Event::InstanceStored { calling, sop_instance_uid, .. } => println!("{calling} stored {sop_instance_uid}"),
                other => println!("{other:?}"),
            }
        }
    });
    server.serve(shutdown).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let data_dir = args.first().map_or_else(|| std::env::temp_dir().join("pacs-dimse-example"), std::path::PathBuf::from);
    let port = args.get(1).map(|p| p.parse()).transpose()?.unwrap_or(11112);
    run(&data_dir, port, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

#[test]
fn example_serves_and_stops() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = std::env::temp_dir().join(format!("pacs-dimse-example-{}", std::process::id()));
    runtime.block_on(async { run(&dir, 0, tokio::time::sleep(std::time::Duration::from_millis(200))).await }).expect("the example runs");
    let _ = std::fs::remove_dir_all(&dir);
}
