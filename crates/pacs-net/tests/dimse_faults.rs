//! The DIMSE server under faults and cancels, driven at the PDU level: an A-ABORT and a truncated
//! PDU in the middle of a C-STORE store nothing and leave no blob behind; a C-CANCEL stops a
//! C-FIND; a C-GET whose requestor cannot receive a SOP class lists the failed instances; a full
//! disk fails the C-STOREs that do not fit, with their cause, and loses nothing.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dicom_ul::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use pacs_core::{Query, QueryLevel};
use pacs_net::dimse::client::{self, ClientConfig, FileToSend, Model, Node};
use pacs_net::dimse::command::{Command, CommandField, Priority, status};
use pacs_net::dimse::meta::part10_header;
use pacs_net::dimse::{DimseServer, ServerConfig};
use pacs_store::{Archive, ArchiveConfig, VerifyOptions};
use pacs_testkit::SmallDisk;
use tokio::io::AsyncWriteExt;

const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";

/// Appends an element, its value padded to even (UIDs with NUL, other values with a space).
fn element(out: &mut Vec<u8>, tag: (u16, u16), vr: &[u8; 2], value: &[u8]) {
    let mut value = value.to_vec();
    if value.len() % 2 == 1 {
        value.push(if vr == b"UI" { 0 } else { b' ' });
    }
    pacs_testkit::push_element(out, tag.0, tag.1, vr, &value);
}

/// The data set of a Secondary Capture object `n` with `pixels` bytes of pixel data.
fn data_set(n: usize, pixels: usize) -> (String, Vec<u8>) {
    let sop = format!("1.2.826.0.1.3680043.10.543.99.{n}");
    let mut out = Vec::new();
    element(&mut out, (0x0008, 0x0016), b"UI", SECONDARY_CAPTURE.as_bytes());
    element(&mut out, (0x0008, 0x0018), b"UI", sop.as_bytes());
    element(&mut out, (0x0008, 0x0060), b"CS", b"OT");
    element(&mut out, (0x0010, 0x0020), b"LO", b"FAULTS");
    element(&mut out, (0x0020, 0x000D), b"UI", b"1.2.826.0.1.3680043.10.543.99.1000");
    element(&mut out, (0x0020, 0x000E), b"UI", b"1.2.826.0.1.3680043.10.543.99.1001");
    element(&mut out, (0x7FE0, 0x0010), b"OW", &vec![7u8; pixels]);
    (sop, out)
}

struct Fixture {
    _dir: tempfile::TempDir,
    archive: Arc<Archive>,
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    node: Node,
    files: std::path::PathBuf,
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::start_in(None).await
    }

    /// A server over an archive in `data` (by default in the fixture's temporary folder).
    async fn start_in(data: Option<&std::path::Path>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let data = data.map_or_else(|| dir.path().join("data"), std::path::Path::to_path_buf);
        let archive = Arc::new(Archive::open(&data, ArchiveConfig::default()).unwrap());
        let config = ServerConfig { ae_title: "PACS".into(), ..ServerConfig::default() };
        let server = DimseServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), Arc::clone(&archive), config).await.unwrap();
        let address = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        let files = dir.path().join("files");
        std::fs::create_dir_all(&files).unwrap();
        Fixture { archive, address, stop: Some(stop), node: Node { ae_title: "PACS".into(), address: address.to_string() }, files, _dir: dir }
    }

    /// Writes objects `from..to` as files and sends them with our SCU.
    async fn store(&self, from: usize, to: usize) {
        let mut files = Vec::new();
        for n in from..to {
            let (sop, body) = data_set(n, 512);
            let path = self.files.join(format!("{n}.dcm"));
            let mut bytes = part10_header(SECONDARY_CAPTURE, &sop, EXPLICIT_VR_LE, "TEST");
            bytes.extend_from_slice(&body);
            std::fs::write(&path, bytes).unwrap();
            files.push(FileToSend::inspect(&path).unwrap());
        }
        let stored = std::sync::atomic::AtomicUsize::new(0);
        client::store_files(&ClientConfig::default(), &self.node, &files, &|s| {
            assert!(s.stored(), "{s:?}");
            stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .await
        .unwrap();
        assert_eq!(stored.into_inner(), to - from);
    }

    async fn association(&self, abstract_syntax: &str) -> dicom_ul::association::client::AsyncClientAssociation<tokio::net::TcpStream> {
        ClientAssociationOptions::new()
            .calling_ae_title("TEST")
            .called_ae_title("PACS")
            .with_presentation_context(abstract_syntax, vec![EXPLICIT_VR_LE])
            .establish_async(self.address)
            .await
            .unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn pdata(context: u8, kind: PDataValueType, is_last: bool, data: Vec<u8>) -> Pdu {
    Pdu::PData { data: vec![PDataValue { presentation_context_id: context, value_type: kind, is_last, data }] }
}

/// Waits (bounded) until `check` holds.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_truncated_pdu_mid_store_keep_nothing() {
    let fixture = Fixture::start().await;
    let (sop, body) = data_set(1, 4 * 1024 * 1024);

    // A-ABORT after the first megabyte.
    let mut ul = fixture.association(SECONDARY_CAPTURE).await;
    let context = ul.presentation_contexts()[0].id;
    ul.send(&pdata(context, PDataValueType::Command, true, Command::c_store_rq(1, SECONDARY_CAPTURE, &sop, Priority::Medium).encode())).await.unwrap();
    for piece in body.chunks(16 * 1024).take(64) {
        ul.send(&pdata(context, PDataValueType::Data, false, piece.to_vec())).await.unwrap();
    }
    ul.abort().await.unwrap();

    // A P-DATA-TF announcing 100 000 bytes of which 50 arrive, then the connection drops.
    let mut ul = fixture.association(SECONDARY_CAPTURE).await;
    let context = ul.presentation_contexts()[0].id;
    ul.send(&pdata(context, PDataValueType::Command, true, Command::c_store_rq(1, SECONDARY_CAPTURE, &sop, Priority::Medium).encode())).await.unwrap();
    ul.send(&pdata(context, PDataValueType::Data, false, body[..16 * 1024].to_vec())).await.unwrap();
    let stream = ul.inner_stream();
    stream.write_all(&[0x04, 0x00, 0x00, 0x01, 0x86, 0xA0]).await.unwrap();
    stream.write_all(&[0u8; 50]).await.unwrap();
    stream.shutdown().await.unwrap();
    drop(ul);

    // The server keeps serving, and stores complete objects.
    let echoed = client::echo(&ClientConfig::default(), &fixture.node).await.unwrap();
    assert_eq!(echoed, status::SUCCESS);
    fixture.store(2, 3).await;

    // Nothing of the broken stores remains: one instance, no orphan blob.
    let archive = Arc::clone(&fixture.archive);
    let clean = eventually(|| {
        // The archive's blocking API, called from a runtime thread.
        let report = tokio::task::block_in_place(|| archive.verify(VerifyOptions { checksums: true, repair: false }, &mut |_| {})).unwrap();
        report.is_clean() && report.orphans.is_empty()
    })
    .await;
    assert!(clean, "a broken C-STORE left something behind");
    assert_eq!(fixture.archive.stats().unwrap().instances, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_cancel_stops_a_c_find() {
    let fixture = Fixture::start().await;
    fixture.store(0, 40).await;

    // The request and its cancel back to back: the server sees the cancel before its first match.
    let mut ul = fixture.association(STUDY_ROOT_FIND).await;
    let context = ul.presentation_contexts()[0].id;
    let mut request = Command::c_find_rq(5, STUDY_ROOT_FIND, Priority::Medium);
    request.has_data_set = true;
    let identifier = client::encode_identifier(&Query::new(QueryLevel::Instance), Model::StudyRoot, EXPLICIT_VR_LE);
    ul.send(&pdata(context, PDataValueType::Command, true, request.encode())).await.unwrap();
    ul.send(&pdata(context, PDataValueType::Data, true, identifier)).await.unwrap();
    ul.send(&pdata(context, PDataValueType::Command, true, Command::c_cancel_rq(5).encode())).await.unwrap();
    let mut pending = 0;
    let final_status = loop {
        let Pdu::PData { data } = ul.receive().await.unwrap() else { panic!("P-DATA expected") };
        let mut done = None;
        for value in data {
            if value.value_type == PDataValueType::Command {
                let response = Command::decode(&value.data).unwrap();
                assert_eq!(response.field, CommandField::CFindRsp);
                match response.status {
                    Some(status::PENDING) => pending += 1,
                    other => done = other,
                }
            }
        }
        if let Some(code) = done {
            break code;
        }
    };
    assert_eq!(final_status, status::CANCEL, "after {pending} matches");
    assert!(pending < 40, "{pending}");
    ul.release().await.unwrap();

    // Our SCU cancels once it has the matches it asked for.
    let mut query = Query::new(QueryLevel::Instance);
    query.limit = Some(5);
    let mut rows = Vec::new();
    let outcome = client::find(&ClientConfig::default(), &fixture.node, Model::StudyRoot, &query, &mut |r| rows.push(r)).await.unwrap();
    assert_eq!(rows.len(), 5);
    assert!(matches!(outcome.status, status::CANCEL | status::SUCCESS), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_get_lists_the_instances_it_could_not_send() {
    let fixture = Fixture::start().await;
    fixture.store(0, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let local = Arc::new(Archive::open(dir.path(), ArchiveConfig::default()).unwrap());
    let query = Query::new(QueryLevel::Study).with(pacs_core::Attribute::StudyInstanceUid, "1.2.826.0.1.3680043.10.543.99.1000").unwrap();

    // The requestor only takes CT images: none of the three can be sent.
    let ct = vec!["1.2.840.10008.5.1.4.1.1.2".to_owned()];
    let outcome = client::get(&ClientConfig::default(), &fixture.node, Model::StudyRoot, &query, Arc::clone(&local), &ct, &mut |_, _| {}).await.unwrap();
    assert_eq!(outcome.status, status::SUB_OPERATIONS_COMPLETE_WITH_FAILURES, "{outcome:?}");
    assert_eq!((outcome.completed, outcome.failed), (0, 3));
    let mut failed = outcome.failed_instances.clone();
    failed.sort();
    assert_eq!(failed, (0..3).map(|n| format!("1.2.826.0.1.3680043.10.543.99.{n}")).collect::<Vec<_>>());

    // Offered the right class, all three arrive and are stored.
    let outcome = client::get(&ClientConfig::default(), &fixture.node, Model::StudyRoot, &query, Arc::clone(&local), &[], &mut |_, _| {}).await.unwrap();
    assert_eq!((outcome.status, outcome.completed, outcome.stored), (status::SUCCESS, 3, 3), "{outcome:?}");
    assert_eq!(local.stats().unwrap().instances, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_object_under_a_stored_uid_is_kept_out_with_a_warning() {
    let fixture = Fixture::start().await;
    fixture.store(0, 1).await;
    let (sop, body) = data_set(0, 1024);
    let path = fixture.files.join("other.dcm");
    let mut bytes = part10_header(SECONDARY_CAPTURE, &sop, EXPLICIT_VR_LE, "TEST");
    bytes.extend_from_slice(&body);
    std::fs::write(&path, bytes).unwrap();
    let file = FileToSend::inspect(&path).unwrap();
    let statuses = std::sync::Mutex::new(Vec::new());
    client::store_files(&ClientConfig::default(), &fixture.node, &[file], &|s| statuses.lock().unwrap().push((s.status, s.comment.clone()))).await.unwrap();
    let statuses = statuses.into_inner().unwrap();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].0, Some(status::ELEMENTS_DISCARDED), "{statuses:?}");
    assert!(statuses[0].1.as_deref().unwrap_or("").contains("kept"), "{statuses:?}");
    // The stored object is still the first one (512 bytes of pixel data, not 1024).
    let scope = pacs_core::Scope::Instance(pacs_core::Uid::new(&sop).unwrap());
    let records = tokio::task::block_in_place(|| fixture.archive.instances(&scope)).unwrap();
    assert_eq!(records.len(), 1);
    let (_, first) = data_set(0, 512);
    assert_eq!(records[0].size as usize, part10_header(SECONDARY_CAPTURE, &sop, EXPLICIT_VR_LE, "TEST").len() + first.len());
}

/// C-STOREs onto a full disk: the archive on a 2 MiB tmpfs (mounting needs root, which the test
/// script has), six objects of 600 KB on one association.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_stores_onto_a_full_disk_fail_with_their_cause_and_lose_nothing() {
    let base = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&base.path().join("small"), "2M") else {
        println!("not root: cannot mount a small tmpfs, the full-disk test does not apply");
        return;
    };
    let fixture = Fixture::start_in(Some(&disk.path().join("data"))).await;
    let mut files = Vec::new();
    for n in 0..6 {
        let (sop, body) = data_set(n, 600 * 1024);
        let path = fixture.files.join(format!("{n}.dcm"));
        let mut bytes = part10_header(SECONDARY_CAPTURE, &sop, EXPLICIT_VR_LE, "TEST");
        bytes.extend_from_slice(&body);
        std::fs::write(&path, bytes).unwrap();
        files.push(FileToSend::inspect(&path).unwrap());
    }
    let statuses = std::sync::Mutex::new(Vec::new());
    client::store_files(&ClientConfig::default(), &fixture.node, &files, &|s| statuses.lock().unwrap().push((s.status, s.comment.clone()))).await.unwrap();
    let statuses = statuses.into_inner().unwrap();
    println!("full disk: {statuses:?}");
    assert_eq!(statuses.len(), 6);
    let stored = statuses.iter().filter(|(code, _)| *code == Some(status::SUCCESS)).count();
    assert!(stored < 6, "3.6 MB cannot fit on 2 MiB: {statuses:?}");
    for (code, comment) in statuses.iter().filter(|(code, _)| *code != Some(status::SUCCESS)) {
        assert_eq!(*code, Some(status::OUT_OF_RESOURCES), "{statuses:?}");
        assert!(comment.as_deref().unwrap_or("").contains("No space left"), "the cause, not a path: {comment:?}");
    }
    // What was acknowledged is stored whole; nothing else is left behind.
    let archive = Arc::clone(&fixture.archive);
    let report = tokio::task::block_in_place(|| archive.verify(VerifyOptions { checksums: true, repair: false }, &mut |_| {})).unwrap();
    assert!(report.is_clean() && report.orphans.is_empty(), "{report:?}");
    assert_eq!(fixture.archive.stats().unwrap().instances, stored as u64);

    // Once there is room again, the same association settings store as before.
    disk.resize("32M");
    fixture.store(10, 12).await;
    assert_eq!(fixture.archive.stats().unwrap().instances, stored as u64 + 2);
}
