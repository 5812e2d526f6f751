//! Receiving C-STORE data sets into the archive, for the SCP (C-STORE requests) and for the
//! C-GET SCU (storage sub-operations coming back on its association).
//!
//! A data set streams into a blocking `Archive::stage` through a bounded channel as its
//! fragments arrive (the network waits while the archive is behind), and is then committed by
//! a `Committer` (module `commit`): one task that gathers the instances staged by every
//! association and commits them together, so that concurrent C-STOREs share the fsyncs of one
//! group commit. A response is sent only after its instance's commit returned.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use pacs_core::InsertOutcome;
use pacs_store::{Archive, IngestReport, Staged};
use tokio::sync::mpsc;

use super::command::status;
use super::meta::part10_header;
use crate::channel::ChannelReader;
use crate::commit::Committer;
use crate::error::{Error, Result};

/// A C-STORE data set streaming into the archive.
///
/// Dropped before [`finish`](Self::finish) (the association ended mid data set), the stage sees
/// the end of its input, fails on the truncated object and removes its blob: nothing partial is
/// stored.
pub(crate) struct Receiving {
    data: Option<mpsc::Sender<Bytes>>,
    staging: tokio::task::JoinHandle<pacs_core::Result<Staged>>,
    sop_instance: String,
}

/// The outcome of one received C-STORE: the response status and comment, and the ingest report
/// when the instance is (now or already) stored.
pub(crate) struct Received {
    /// The C-STORE-RSP status.
    pub code: u16,
    /// The Error Comment, if any (not yet cut to 64 characters).
    pub comment: Option<String>,
    /// The ingest report, when the instance was committed.
    pub report: Option<IngestReport>,
}

impl Receiving {
    /// Starts staging the data set of `sop_class` / `sop_instance` encoded in `transfer_syntax`,
    /// sent by `source_ae`; its fragments follow with [`push`](Self::push).
    pub(crate) fn start(archive: &Arc<Archive>, sop_class: &str, sop_instance: &str, transfer_syntax: &str, source_ae: &str) -> Receiving {
        let header = part10_header(sop_class, sop_instance, transfer_syntax, source_ae);
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        let archive = Arc::clone(archive);
        let staging = tokio::task::spawn_blocking(move || archive.stage(&mut ChannelReader::new(Bytes::from(header), rx)));
        Receiving { data: Some(tx), staging, sop_instance: sop_instance.to_owned() }
    }

    /// Passes on a fragment of the data set. After a rejection the stage has ended early and the
    /// rest is dropped.
    pub(crate) async fn push(&mut self, fragment: Vec<u8>) {
        if let Some(tx) = &self.data
            && tx.send(Bytes::from(fragment)).await.is_err()
        {
            self.data = None;
        }
    }

    /// Ends the data set, waits for the stage and commits the instance through `committer`.
    pub(crate) async fn finish(self, archive: &Archive, committer: &Committer) -> Result<Received> {
        drop(self.data);
        let staged = self.staging.await.map_err(|e| Error::Io { action: "storing an instance".into(), source: io::Error::other(e) })?;
        let sop_instance = self.sop_instance;
        Ok(match staged {
            Err(e) => {
                let code = if matches!(e, pacs_core::Error::Rejected(_)) { status::CANNOT_UNDERSTAND } else { status::OUT_OF_RESOURCES };
                if code == status::OUT_OF_RESOURCES {
                    tracing::warn!(sop = %sop_instance, error = %e, "C-STORE not stored");
                }
                Received { code, comment: Some(crate::error::peer_comment(&e)), report: None }
            }
            Ok(staged) if staged.record.sop_instance_uid.as_str() != sop_instance => {
                let comment = format!("data set holds SOP Instance UID {}, the request names {sop_instance}", staged.record.sop_instance_uid);
                archive.abandon(staged);
                Received { code: status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS, comment: Some(comment), report: None }
            }
            Ok(staged) => match committer.commit(staged).await {
                Ok(report) => match report.outcome {
                    InsertOutcome::Refused { .. } => Received {
                        code: status::DUPLICATE_SOP_INSTANCE,
                        comment: Some("a different instance with this SOP Instance UID is stored".into()),
                        report: Some(report),
                    },
                    // The duplicate policy kept the different object stored under this UID: a
                    // warning, so that the sender knows this one was not stored.
                    InsertOutcome::KeptExisting { .. } => {
                        Received { code: status::ELEMENTS_DISCARDED, comment: Some("a different instance with this UID is kept".into()), report: Some(report) }
                    }
                    _ => Received { code: status::SUCCESS, comment: None, report: Some(report) },
                },
                Err(message) => {
                    tracing::error!(sop = %sop_instance, error = %message, "C-STORE could not be committed");
                    Received { code: status::OUT_OF_RESOURCES, comment: Some(message), report: None }
                }
            },
        })
    }
}
