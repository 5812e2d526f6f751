//! Blob storage through `object_store`: a local folder by default, in memory for tests, and any
//! other `object_store` backend (S3...) for scale-out.
//!
//! The [`BlobStore`] trait is blocking, so that rayon workers and `spawn_blocking` tasks can
//! stream through it alike; this adapter runs the asynchronous `object_store` calls on a small
//! runtime of its own. Never call it from inside an asynchronous task.

use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use pacs_core::{BlobKey, BlobStore, BlobWrite, Error, Result};
use tokio::runtime::Runtime;

/// Objects up to this size are written with one `put`; larger ones stream as a multipart upload.
const INLINE_LIMIT: usize = 1024 * 1024;
/// Part size of multipart uploads: the most a writer holds in memory.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// From this many objects on, [`BlobStore::sync`] on a local folder flushes the whole file system
/// once (`syncfs`) instead of each file and folder: a group commit.
const SYNCFS_FROM: usize = 8;

/// A [`BlobStore`] over any `object_store` backend.
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    /// Root folder when the backend is the local file system: `sync` then fsyncs.
    local_root: Option<PathBuf>,
    runtime: Arc<BlobRuntime>,
    description: String,
    /// Folders already fsynced since this store was opened (local folder only).
    durable_dirs: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

/// The runtime that runs `object_store` calls. It shuts down in the background when the last
/// user drops it, so that an archive may be dropped inside an asynchronous task (a plain
/// runtime panics when dropped there).
struct BlobRuntime(Option<Runtime>);

impl BlobRuntime {
    fn get(&self) -> &Runtime {
        // Only `Drop` takes the runtime out.
        self.0.as_ref().unwrap_or_else(|| unreachable!("blob runtime used after drop"))
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.get().block_on(future)
    }

    fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.get().enter()
    }
}

impl Drop for BlobRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn unavailable(description: &str, action: impl Into<String>, source: object_store::Error) -> Error {
    match source {
        object_store::Error::NotFound { path, .. } => Error::NotFound { what: format!("blob {path}") },
        source => Error::Unavailable { backend: description.to_owned(), action: action.into(), source: Box::new(source) },
    }
}

impl ObjectBlobStore {
    /// A store in the local folder `root` (created if missing). Objects are files under it,
    /// named by their key; writes are staged and renamed, and made durable by [`BlobStore::sync`].
    pub fn local(root: &FsPath) -> Result<ObjectBlobStore> {
        std::fs::create_dir_all(root).map_err(|source| Error::Io { action: "creating blob folder", target: root.display().to_string(), source })?;
        let root = root.canonicalize().map_err(|source| Error::Io { action: "opening blob folder", target: root.display().to_string(), source })?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| unavailable("local folder", format!("opening {}", root.display()), e))?
            // Emptied folders stay: `sync` remembers which folders are durable, and a folder
            // removed and made again would have a new, unsynced entry in its parent.
            .with_automatic_cleanup(false);
        let description = format!("local folder {}", root.display());
        Self::build(Arc::new(store), Some(root), description)
    }

    /// A store in memory, for tests and ephemeral use.
    pub fn in_memory() -> Result<ObjectBlobStore> {
        Self::build(Arc::new(InMemory::new()), None, "memory".to_owned())
    }

    /// A store over any `object_store` backend (already configured), described as `description`.
    /// Completion of a write is taken as durable, as object stores acknowledge durable writes.
    pub fn from_object_store(store: Arc<dyn ObjectStore>, description: impl Into<String>) -> Result<ObjectBlobStore> {
        Self::build(store, None, description.into())
    }

    fn build(store: Arc<dyn ObjectStore>, local_root: Option<PathBuf>, description: String) -> Result<ObjectBlobStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pacs-blob")
            .enable_all()
            .build()
            .map_err(|source| Error::Io { action: "starting blob runtime", target: description.clone(), source })?;
        Ok(ObjectBlobStore { store, local_root, runtime: Arc::new(BlobRuntime(Some(runtime))), description, durable_dirs: Default::default() })
    }

    fn path(key: &BlobKey) -> Path {
        Path::from(key.as_str())
    }

    /// Opens the file of `key` under the local folder `root`.
    fn open_local(root: &FsPath, key: &BlobKey) -> Result<std::fs::File> {
        open_file(&root.join(key.as_str()), key)
    }

    fn fsync_local(&self, root: &FsPath, keys: &[BlobKey]) -> Result<()> {
        let io_err = |action, target: &FsPath| {
            let target = target.display().to_string();
            move |source| Error::Io { action, target, source }
        };
        if keys.len() >= SYNCFS_FROM {
            let dir = std::fs::File::open(root).map_err(io_err("opening blob folder", root))?;
            return rustix::fs::syncfs(&dir).map_err(|e| Error::Io { action: "syncing file system of", target: root.display().to_string(), source: e.into() });
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        {
            let durable = self.durable_dirs.lock().unwrap_or_else(|p| p.into_inner());
            for key in keys {
                let file = root.join(key.as_str());
                std::fs::File::open(&file).and_then(|f| f.sync_all()).map_err(io_err("syncing blob", &file))?;
                // The file's folder gets a new entry: it is synced every time. Its ancestors may
                // be new too; once synced they stay durable, so each is synced once per process.
                let mut dir = file.parent();
                let mut first = true;
                while let Some(d) = dir {
                    if (first || !durable.contains(d)) && !dirs.iter().any(|x| x == d) {
                        dirs.push(d.to_path_buf());
                    }
                    first = false;
                    if d == root {
                        break;
                    }
                    dir = d.parent();
                }
            }
        }
        for d in &dirs {
            std::fs::File::open(d).and_then(|f| f.sync_all()).map_err(io_err("syncing folder", d))?;
        }
        let mut durable = self.durable_dirs.lock().unwrap_or_else(|p| p.into_inner());
        if durable.len() > 100_000 {
            durable.clear();
        }
        durable.extend(dirs);
        Ok(())
    }
}

/// Opens `path`, the file of the object `key` (see [`BlobStore::local_path`]), for reading,
/// with the errors of [`BlobStore::open`]: a missing file is [`Error::NotFound`].
pub fn open_file(path: &FsPath, key: &BlobKey) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => Error::NotFound { what: format!("blob {key}") },
        _ => Error::Io { action: "opening blob", target: path.display().to_string(), source },
    })
}

impl BlobStore for ObjectBlobStore {
    fn create(&self, key: &BlobKey) -> Result<Box<dyn BlobWrite>> {
        if let Some(root) = &self.local_root {
            return Ok(Box::new(LocalWriter::create(root, key)?));
        }
        Ok(Box::new(Writer {
            store: Arc::clone(&self.store),
            runtime: Arc::clone(&self.runtime),
            path: Self::path(key),
            buffer: Vec::new(),
            multipart: None,
            description: self.description.clone(),
        }))
    }

    fn sync(&self, keys: &[BlobKey]) -> Result<()> {
        match &self.local_root {
            Some(root) if !keys.is_empty() => self.fsync_local(root, keys),
            _ => Ok(()),
        }
    }

    fn open(&self, key: &BlobKey) -> Result<Box<dyn Read + Send>> {
        if let Some(root) = &self.local_root {
            // A local file is opened here: the object store would hand the open to a blocking
            // thread of its runtime and back, which costs more than reading a small object.
            return Ok(Box::new(Self::open_local(root, key)?));
        }
        let path = Self::path(key);
        let result = self.runtime.block_on(self.store.get(&path)).map_err(|e| unavailable(&self.description, format!("reading {key}"), e))?;
        match result.payload {
            GetResultPayload::File(file, _) => Ok(Box::new(file)),
            GetResultPayload::Stream(stream) => Ok(Box::new(StreamReader { stream, runtime: Arc::clone(&self.runtime), current: Bytes::new() })),
        }
    }

    fn local_path(&self, key: &BlobKey) -> Option<PathBuf> {
        self.local_root.as_deref().map(|root| root.join(key.as_str()))
    }

    fn read_range(&self, key: &BlobKey, range: Range<u64>) -> Result<Bytes> {
        if let Some(root) = &self.local_root {
            use std::os::unix::fs::FileExt;
            let file = Self::open_local(root, key)?;
            let len = usize::try_from(range.end.saturating_sub(range.start)).map_err(|_| Error::Corrupt { what: format!("range of {key}") })?;
            let mut out = BytesMut::zeroed(len);
            file.read_exact_at(&mut out, range.start).map_err(|source| match source.kind() {
                io::ErrorKind::UnexpectedEof => Error::Corrupt { what: format!("blob {key} is shorter than {} bytes", range.end) },
                _ => Error::Io { action: "reading blob", target: key.to_string(), source },
            })?;
            return Ok(out.freeze());
        }
        self.runtime.block_on(self.store.get_range(&Self::path(key), range)).map_err(|e| unavailable(&self.description, format!("reading a range of {key}"), e))
    }

    fn size(&self, key: &BlobKey) -> Result<Option<u64>> {
        match self.runtime.block_on(self.store.head(&Self::path(key))) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(&self.description, format!("looking up {key}"), e)),
        }
    }

    fn delete(&self, key: &BlobKey) -> Result<()> {
        match self.runtime.block_on(self.store.delete(&Self::path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable(&self.description, format!("deleting {key}"), e)),
        }
    }

    fn list(&self, f: &mut dyn FnMut(BlobKey, u64)) -> Result<()> {
        let description = &self.description;
        self.runtime.block_on(async {
            let mut listing = self.store.list(None);
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| unavailable(description, "listing blobs", e))?;
                // Anything that is not a valid key (staging leftovers, foreign files) is not ours.
                if let Ok(key) = BlobKey::new(meta.location.as_ref()) {
                    f(key, meta.size);
                }
            }
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// Writes a local object straight to the file system: staged under the key's file name with a
/// `#<n>` suffix (a name no key can have, skipped by listings, as the object store's local
/// backend names its own), renamed into place by `finish`. The object store would hand every
/// call to a blocking thread of its runtime and back.
struct LocalWriter {
    file: Option<std::io::BufWriter<std::fs::File>>,
    staging: PathBuf,
    target: PathBuf,
    /// Whether the staged file became the object.
    renamed: bool,
    /// Bytes written.
    written: u64,
}

/// Objects from this size on start being written back to the disk as soon as they are finished,
/// on a thread of their own, so that the flush of their commit finds less left to wait for (the
/// commit's `sync` still makes them durable). Small objects are left to that flush: one flush
/// per small file would cost more than it saves.
const EARLY_WRITEBACK_FROM: u64 = 256 * 1024;
/// At most this many early write-backs run at once; beyond, objects wait for their commit.
const EARLY_WRITEBACKS: usize = 4;
static EARLY_WRITEBACKS_RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Starts writing `file` back to the disk in the background, if it is large and few are running.
fn early_writeback(file: std::fs::File, written: u64) {
    use std::sync::atomic::Ordering;
    if written < EARLY_WRITEBACK_FROM
        || EARLY_WRITEBACKS_RUNNING.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < EARLY_WRITEBACKS).then_some(n + 1)).is_err()
    {
        return;
    }
    let spawned = std::thread::Builder::new().name("blob-writeback".into()).spawn(move || {
        // Only a head start: an error here is the commit's flush's to report.
        let _ = file.sync_data();
        EARLY_WRITEBACKS_RUNNING.fetch_sub(1, Ordering::AcqRel);
    });
    if spawned.is_err() {
        EARLY_WRITEBACKS_RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LocalWriter {
    fn create(root: &FsPath, key: &BlobKey) -> Result<LocalWriter> {
        static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let target = root.join(key.as_str());
        let n = STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut staging = target.clone().into_os_string();
        staging.push(format!("#{}{n}", std::process::id()));
        let staging = PathBuf::from(staging);
        let open = || std::fs::OpenOptions::new().write(true).create_new(true).open(&staging);
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = target.parent() {
                    std::fs::create_dir_all(dir).map_err(|source| Error::Io { action: "creating blob folder", target: dir.display().to_string(), source })?;
                }
                open()
            }
            other => other,
        }
        .map_err(|source| Error::Io { action: "creating blob", target: staging.display().to_string(), source })?;
        Ok(LocalWriter { file: Some(std::io::BufWriter::with_capacity(256 * 1024, file)), staging, target, renamed: false, written: 0 })
    }

    fn io(&self, action: &'static str) -> impl FnOnce(io::Error) -> Error + '_ {
        move |source| Error::Io { action, target: self.staging.display().to_string(), source }
    }
}

impl BlobWrite for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> Result<()> {
        use std::io::Write;
        let Some(file) = self.file.as_mut() else { return Err(Error::Corrupt { what: "write after finish".into() }) };
        file.write_all(buf).map_err(|source| Error::Io { action: "writing blob", target: self.staging.display().to_string(), source })?;
        self.written += buf.len() as u64;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let file = self.file.take().ok_or_else(|| Error::Corrupt { what: "blob finished twice".into() })?;
        let file = file.into_inner().map_err(|e| e.into_error()).map_err(self.io("writing blob"))?;
        early_writeback(file, self.written);
        std::fs::rename(&self.staging, &self.target).map_err(self.io("renaming blob"))?;
        self.renamed = true;
        Ok(())
    }

    fn abort(self: Box<Self>) {}
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        // Not finished (aborted, failed, or dropped): the staged file goes.
        if !self.renamed {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.staging);
        }
    }
}

struct Writer {
    store: Arc<dyn ObjectStore>,
    runtime: Arc<BlobRuntime>,
    path: Path,
    buffer: Vec<u8>,
    multipart: Option<WriteMultipart>,
    description: String,
}

impl Writer {
    fn fail(&self, action: &str, e: object_store::Error) -> Error {
        unavailable(&self.description, format!("{action} {}", self.path), e)
    }
}

impl BlobWrite for Writer {
    fn write(&mut self, buf: &[u8]) -> Result<()> {
        // `WriteMultipart::write` spawns the upload of each full part on the current runtime.
        let _runtime = self.runtime.enter();
        if let Some(upload) = &mut self.multipart {
            upload.write(buf);
            let waited = self.runtime.block_on(upload.wait_for_capacity(2));
            return waited.map_err(|e| self.fail("writing", e));
        }
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() > INLINE_LIMIT {
            let upload = self.runtime.block_on(self.store.put_multipart(&self.path)).map_err(|e| self.fail("starting upload of", e))?;
            let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            upload.write(&std::mem::take(&mut self.buffer));
            self.multipart = Some(upload);
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        match self.multipart.take() {
            Some(upload) => self.runtime.block_on(upload.finish()).map(drop).map_err(|e| self.fail("completing", e)),
            None => {
                let payload = PutPayload::from(Bytes::from(std::mem::take(&mut self.buffer)));
                self.runtime.block_on(self.store.put(&self.path, payload)).map(drop).map_err(|e| self.fail("writing", e))
            }
        }
    }

    fn abort(mut self: Box<Self>) {
        if let Some(upload) = self.multipart.take()
            && let Err(e) = self.runtime.block_on(upload.abort())
        {
            tracing::warn!(path = %self.path, error = %e, "aborting an upload failed; a staging leftover may remain");
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(upload) = self.multipart.take() {
            let _ = self.runtime.block_on(upload.abort());
        }
    }
}

struct StreamReader {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    runtime: Arc<BlobRuntime>,
    current: Bytes,
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
