//! STOW-RS of a different object under a SOP Instance UID already stored: with the duplicate
//! policy "keep", the stored object stays, and the answer says so (202, Warning Reason B006).
//! Driven with curl, a client we did not write.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use pacs_net::dimse::meta::part10_header;
use pacs_net::web::{WebConfig, WebServer};
use pacs_store::{Archive, ArchiveConfig};

const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
const SOP: &str = "1.2.826.0.1.3680043.10.543.98.1";

fn object(pixel: u8) -> Vec<u8> {
    let mut out = part10_header(SECONDARY_CAPTURE, SOP, "1.2.840.10008.1.2.1", "TEST");
    let mut element = |tag: (u16, u16), vr: &[u8; 2], value: &[u8]| {
        out.extend_from_slice(&tag.0.to_le_bytes());
        out.extend_from_slice(&tag.1.to_le_bytes());
        out.extend_from_slice(vr);
        if vr == b"OW" {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(value);
    };
    element((0x0008, 0x0016), b"UI", b"1.2.840.10008.5.1.4.1.1.7\0");
    element((0x0008, 0x0018), b"UI", b"1.2.826.0.1.3680043.10.543.98.1\0");
    element((0x0010, 0x0020), b"LO", b"DUP ");
    element((0x0020, 0x000D), b"UI", b"1.2.826.0.1.3680043.10.543.98.2\0");
    element((0x0020, 0x000E), b"UI", b"1.2.826.0.1.3680043.10.543.98.3\0");
    element((0x7FE0, 0x0010), b"OW", &[pixel; 64]);
    out
}

/// POSTs `file` as a single-part STOW-RS request; returns the HTTP status and the JSON body.
fn stow(base: &str, file: &std::path::Path) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: application/dicom", "-H", "Accept: application/dicom+json", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(format!("{base}/studies"))
        .output()
        .expect("run curl (scripts/test.sh installs it)");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_object_under_a_stored_uid_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Arc::new(Archive::open(&dir.path().join("data"), ArchiveConfig::default()).unwrap());
    let server = WebServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), Arc::clone(&archive), WebConfig::default()).await.unwrap();
    let base = format!("http://{}/dicom-web", server.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let first = dir.path().join("first.dcm");
    let second = dir.path().join("second.dcm");
    std::fs::write(&first, object(1)).unwrap();
    std::fs::write(&second, object(2)).unwrap();

    let post = |file: &std::path::Path| {
        let (base, file) = (base.clone(), file.to_owned());
        // curl blocks: off the runtime's threads.
        tokio::task::spawn_blocking(move || stow(&base, &file))
    };
    let (code, body) = post(&first).await.unwrap();
    assert_eq!(code, 200, "{body}");
    // The same bytes again: an idempotent success.
    let (code, body) = post(&first).await.unwrap();
    assert_eq!(code, 200, "{body}");
    // Different bytes under the same UID: kept out, with a warning.
    let (code, body) = post(&second).await.unwrap();
    assert_eq!(code, 202, "{body}");
    let item = &body["00081199"]["Value"][0];
    assert_eq!(item["00081196"]["Value"][0], 0xB006, "{body}");
    let stored = tokio::task::block_in_place(|| {
        let (record, mut reader) = archive.retrieve(&pacs_core::Uid::new(SOP).unwrap()).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut bytes).unwrap();
        (record, bytes)
    });
    assert_eq!(stored.1, object(1), "the first object is kept");
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
