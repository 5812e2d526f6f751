//! Group commit: instances staged by any association or request are committed together by one
//! task, so that concurrent C-STOREs, and concurrent STOW-RS requests, share the flushes of one
//! commit (of the blobs, then of one index transaction) instead of each paying its own and
//! waiting for the others' in the index's single writer.

use std::sync::Arc;

use pacs_store::{Archive, IngestReport, Staged};
use tokio::sync::{mpsc, oneshot};

/// Batches committed together at most (a batch: a C-STORE's instance, or the instances of a
/// STOW-RS request, which are never split).
const MAX_GROUP: usize = 64;

/// A batch of staged instances and where its reports go.
type Request = (Vec<Staged>, oneshot::Sender<Result<Vec<IngestReport>, String>>);

/// Group commit: instances staged by any association or request are committed together by one
/// task.
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
                let mut staged = Vec::new();
                let mut waiters = Vec::with_capacity(group.len());
                for (batch, waiter) in group.drain(..) {
                    waiters.push((batch.len(), waiter));
                    staged.extend(batch);
                }
                let archive = Arc::clone(&archive);
                let committed = tokio::task::spawn_blocking(move || archive.commit(staged)).await;
                match committed {
                    Ok(Ok(reports)) => {
                        let mut reports = reports.into_iter();
                        for (n, waiter) in waiters {
                            let _ = waiter.send(Ok(reports.by_ref().take(n).collect()));
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "group commit failed; its instances are not stored");
                        let message = crate::error::peer_comment(&e);
                        for (_, waiter) in waiters {
                            let _ = waiter.send(Err(message.clone()));
                        }
                    }
                    Err(e) => {
                        for (_, waiter) in waiters {
                            let _ = waiter.send(Err(format!("commit task failed: {e}")));
                        }
                    }
                }
            }
        });
        Committer { tx }
    }

    /// Commits `staged` with whatever else is waiting; returns its report or the error as a peer
    /// is told it (the full error is logged).
    pub(crate) async fn commit(&self, staged: Staged) -> Result<IngestReport, String> {
        self.commit_all(vec![staged]).await?.pop().ok_or_else(|| "the commit returned no report".to_owned())
    }

    /// Commits `staged`, all in the same group (with whatever else is waiting); returns their
    /// reports, in order, or the error as a peer is told it (then none of them is stored).
    pub(crate) async fn commit_all(&self, staged: Vec<Staged>) -> Result<Vec<IngestReport>, String> {
        let (done, wait) = oneshot::channel();
        self.tx.send((staged, done)).await.map_err(|_| "the committer has stopped".to_owned())?;
        wait.await.map_err(|_| "the committer has stopped".to_owned())?
    }
}
