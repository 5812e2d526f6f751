//! Receiving C-STORE data sets into the archive, for the SCP (C-STORE requests) and for the
//! C-GET SCU (storage sub-operations coming back on its association).
//!
//! A data set streams into a blocking `Archive::stage` through a bounded channel as its
//! fragments arrive (the network waits while the archive is behind), and is then committed by
//! a [`Committer`]: one task that gathers the instances staged by every association and commits
//! them together, so that concurrent C-STOREs share the fsyncs of one group commit. A response is
//! sent only after its instance's commit returned.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use pacs_core::InsertOutcome;
use pacs_store::{Archive, IngestReport, Staged};
use tokio::sync::{mpsc, oneshot};

use super::command::status;
use super::meta::part10_header;
use crate::channel::ChannelReader;
use crate::error::{Error, Result};

/// Instances committed together at most.
const MAX_GROUP: usize = 64;

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
                Received { code, comment: Some(e.to_string()), report: None }
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

type Request = (Staged, oneshot::Sender<std::result::Result<IngestReport, String>>);

/// Group commit: instances staged by any association are committed together by one task.
#[derive(Clone)]
pub(crate) struct Committer {
    tx: mpsc::Sender<Request>,
}

impl Committer {
    /// Starts the committing task over `archive` (it ends when every `Committer` is dropped).
    pub(crate) fn start(archive: Arc<Archive>) -> Committer {
        let (tx, mut rx) = mpsc::channel::<Request>(4 * MAX_GROUP);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
                let (staged, waiters): (Vec<Staged>, Vec<_>) = std::mem::take(&mut group).into_iter().unzip();
                let archive = Arc::clone(&archive);
                let committed = tokio::task::spawn_blocking(move || archive.commit(staged)).await;
                match committed {
                    Ok(Ok(reports)) => {
                        for (waiter, report) in waiters.into_iter().zip(reports) {
                            let _ = waiter.send(Ok(report));
                        }
                    }
                    Ok(Err(e)) => {
                        let message = e.to_string();
                        for waiter in waiters {
                            let _ = waiter.send(Err(message.clone()));
                        }
                    }
                    Err(e) => {
                        for waiter in waiters {
                            let _ = waiter.send(Err(format!("commit task failed: {e}")));
                        }
                    }
                }
            }
        });
        Committer { tx }
    }

    /// Commits `staged` with whatever else is waiting; returns its report or the error's message.
    pub(crate) async fn commit(&self, staged: Staged) -> std::result::Result<IngestReport, String> {
        let (done, wait) = oneshot::channel();
        self.tx.send((staged, done)).await.map_err(|_| "the committer has stopped".to_owned())?;
        wait.await.map_err(|_| "the committer has stopped".to_owned())?
    }
}
