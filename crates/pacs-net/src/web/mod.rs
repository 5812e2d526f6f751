//! DICOMweb (PS3.18): STOW-RS, QIDO-RS, WADO-RS and WADO-URI over HTTP, on the same [`Archive`]
//! as the DIMSE face.
//!
//! - [`router`] builds the axum [`Router`] under [`WebConfig::base_path`]; [`WebServer`] binds it
//!   to a socket and serves it until a shutdown signal, like [`crate::dimse::DimseServer`].
//! - [`json`]: the DICOM JSON model (Annex F) of stored objects, from our own walker of the
//!   stored bytes (sequences included, bulk values left in place as `BulkDataURI`).
//! - [`qido`]: search parameters to a [`pacs_core::Query`], rows to DICOM JSON.
//! - [`headers`]: QIDO-RS keys and fields on attributes outside the index, matched and read from
//!   the stored headers (up to Pixel Data) of the candidates the indexed keys select, within
//!   [`WebConfig::max_header_reads`].
//! - [`wado`]: retrieval of instances (streamed `multipart/related`), metadata, frames (read with
//!   [`Archive::read_frame`], only the asked frames' bytes; decoded one by one when asked as
//!   `application/octet-stream`), bulk data, and WADO-URI.
//! - [`stow`]: storage; each part streams through a bounded channel into [`Archive::stage`] on a
//!   blocking thread, and the whole request is committed at once when its body is complete, so a
//!   malformed or oversized body stores nothing.
//! - [`render`]: `/rendered` and `/thumbnail` as JPEG or PNG, by `pacs_codec::render`, for
//!   objects stored in any transfer syntax the build reads.
//!
//! Endpoints, under the base path (`/dicom-web` by default):
//!
//! | method and path | answer |
//! |---|---|
//! | `POST /studies`, `POST /studies/{study}` | STOW-RS |
//! | `GET /studies`, `/series`, `/instances`, `/studies/{study}/series`, `/studies/{study}/instances`, `/studies/{study}/series/{series}/instances` | QIDO-RS |
//! | `GET /studies/{study}[/series/{series}[/instances/{instance}]]` | the instances, `multipart/related; type="application/dicom"` |
//! | `GET .../metadata` | DICOM JSON |
//! | `GET .../instances/{instance}/frames/{list}` | the frames' bytes |
//! | `GET .../bulkdata/{path}` | one bulk value |
//! | `GET .../rendered`, `.../thumbnail`, `.../frames/{n}/rendered` | JPEG or PNG |
//! | `GET /wado?requestType=WADO&...` | WADO-URI |
//! | `GET /health` | `ok` when the index answers |
//!
//! WADO-RS sends instances in the transfer syntax the `transfer-syntax` parameter of the `Accept`
//! header names, transcoded by `pacs_codec` on the blocking pool when it is not the stored one;
//! `*` means as stored, and no parameter means Explicit VR Little Endian (PS3.18 8.7.3.5.2), or as
//! stored for a wildcard (`*/*`) when the stored syntax cannot be decoded. A conversion that is
//! not possible is answered 406 and nothing is sent. Frames are sent as stored, or decoded to
//! native samples for `application/octet-stream` (see [`wado`]).

pub mod headers;
pub mod json;
pub mod media;
pub mod qido;
pub mod render;
mod stored;
pub mod stow;
pub mod wado;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pacs_store::Archive;
use tokio::net::TcpListener;

use crate::commit::Committer;
use crate::error::{Error, Result};

/// Settings of the DICOMweb face.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// The path every endpoint is under, e.g. `/dicom-web` (empty or `/` for the root).
    pub base_path: String,
    /// The largest STOW-RS request body accepted, in bytes; larger ones are answered 413 and
    /// nothing of them is stored.
    pub max_body: u64,
    /// The most results a QIDO-RS search returns; more are cut with a `Warning` header.
    pub max_results: usize,
    /// The most instances whose stored headers a QIDO-RS search on attributes that the index
    /// does not hold may read (see [`headers`]); a search whose candidates, as narrowed by its
    /// indexed keys, hold more is answered 413.
    pub max_header_reads: usize,
    /// Origins allowed by CORS: empty for no CORS headers, `*` for any origin.
    pub cors_origins: Vec<String>,
    /// The URL clients reach the base path at (for `RetrieveURL` and `BulkDataURI`), e.g.
    /// `https://pacs.example.org/dicom-web`; by default built from the request's `Host` header.
    pub public_url: Option<String>,
    /// Binary values longer than this (in bytes) are sent by `/metadata` as `BulkDataURI`.
    pub bulk_threshold: u32,
    /// STOW-RS requests whose bodies are read at once; more wait for their turn before their
    /// bodies are read (the client's upload waits too). Each reading request holds a few chunks
    /// per part in memory, so this bounds the memory of any number of uploads. 0 is taken as 1.
    pub max_stow_requests: usize,
    /// How long a STOW-RS body may send nothing before the request fails (408, nothing of it
    /// stored) and gives its turn to the next.
    pub body_idle_timeout: std::time::Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            base_path: "/dicom-web".into(),
            max_body: 4 * 1024 * 1024 * 1024,
            max_results: 1000,
            max_header_reads: 10_000,
            cors_origins: Vec::new(),
            public_url: None,
            bulk_threshold: 1024,
            max_stow_requests: 32,
            body_idle_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) archive: Arc<Archive>,
    pub(crate) config: Arc<WebConfig>,
    /// The group commit of STOW-RS, started by the first request (inside the runtime: the
    /// router may be made outside one).
    committer: Arc<std::sync::OnceLock<Committer>>,
    /// Turns to read a STOW-RS body ([`WebConfig::max_stow_requests`]).
    pub(crate) stow_turns: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// The group commit that STOW-RS requests share.
    pub(crate) fn committer(&self) -> &Committer {
        self.committer.get_or_init(|| Committer::start(Arc::clone(&self.archive)))
    }

    /// The URL of the base path as seen by the client.
    pub(crate) fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.config.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        format!("http://{host}{}", normalise_base(&self.config.base_path))
    }
}

fn normalise_base(path: &str) -> String {
    let trimmed = path.trim().trim_matches('/');
    if trimmed.is_empty() { String::new() } else { format!("/{trimmed}") }
}

/// The HTTP status of an error: the one table from error kinds to HTTP.
pub fn http_status(error: &Error) -> StatusCode {
    match error {
        Error::BadRequest { .. } | Error::Malformed { .. } => StatusCode::BAD_REQUEST,
        Error::NotAcceptable { .. } => StatusCode::NOT_ACCEPTABLE,
        Error::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::TooLarge { .. } | Error::QueryTooBroad { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Stalled { .. } => StatusCode::REQUEST_TIMEOUT,
        Error::NotImplemented { .. } => StatusCode::NOT_IMPLEMENTED,
        Error::Archive(e) => match e {
            pacs_core::Error::NotFound { .. } => StatusCode::NOT_FOUND,
            pacs_core::Error::InvalidQuery { .. } | pacs_core::Error::InvalidUid { .. } | pacs_core::Error::Rejected(_) => StatusCode::BAD_REQUEST,
            pacs_core::Error::Conflict { .. } => StatusCode::CONFLICT,
            pacs_core::Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    /// The status of [`http_status`] and the message as plain text.
    fn into_response(self) -> Response {
        let status = http_status(&self);
        if status.is_server_error() {
            tracing::error!(error = %self, "DICOMweb request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = %self, "DICOMweb request refused");
        }
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], format!("{self}\n")).into_response()
    }
}

/// A codec error of rendering as a DICOMweb error: what the codecs do not support is 501, an
/// object they cannot decode is corrupt (500). Transcoding for WADO-RS maps what the codecs refuse
/// to 406.
pub(crate) fn codec_error(error: pacs_codec::Error) -> Error {
    match error {
        pacs_codec::Error::Unsupported { .. } | pacs_codec::Error::UnknownTransferSyntax { .. } => Error::NotImplemented { reason: error.to_string() },
        pacs_codec::Error::Write { source } => Error::Io { action: "encoding an image".into(), source },
        other => pacs_core::Error::Corrupt { what: other.to_string() }.into(),
    }
}

/// Runs a blocking archive call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> pacs_core::Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io { action: "running an archive call".into(), source: std::io::Error::other(e) })?
        .map_err(Error::from)
}

/// Validates a UID taken from a request path or parameter.
pub(crate) fn uid(text: &str, what: &str) -> Result<pacs_core::Uid> {
    pacs_core::Uid::new(text.trim()).map_err(|e| Error::BadRequest { reason: format!("{what}: {e}") })
}

/// The DICOMweb routes (without the base path).
fn routes() -> Router<AppState> {
    let instance = "/studies/{study}/series/{series}/instances/{instance}";
    Router::new()
        .route("/health", get(health))
        .route("/wado", get(wado::wado_uri))
        .route("/studies", get(qido::search_studies).post(stow::store))
        .route("/series", get(qido::search_all_series))
        .route("/instances", get(qido::search_all_instances))
        .route("/studies/{study}", get(wado::retrieve_study).post(stow::store_in_study))
        .route("/studies/{study}/metadata", get(wado::study_metadata))
        .route("/studies/{study}/rendered", get(render::study_rendered))
        .route("/studies/{study}/thumbnail", get(render::study_thumbnail))
        .route("/studies/{study}/series", get(qido::search_series))
        .route("/studies/{study}/instances", get(qido::search_study_instances))
        .route("/studies/{study}/series/{series}", get(wado::retrieve_series))
        .route("/studies/{study}/series/{series}/metadata", get(wado::series_metadata))
        .route("/studies/{study}/series/{series}/rendered", get(render::series_rendered))
        .route("/studies/{study}/series/{series}/thumbnail", get(render::series_thumbnail))
        .route("/studies/{study}/series/{series}/instances", get(qido::search_instances))
        .route(instance, get(wado::retrieve_instance))
        .route(&format!("{instance}/metadata"), get(wado::instance_metadata))
        .route(&format!("{instance}/rendered"), get(render::instance_rendered))
        .route(&format!("{instance}/thumbnail"), get(render::instance_thumbnail))
        .route(&format!("{instance}/frames/{{frames}}"), get(wado::frames))
        .route(&format!("{instance}/frames/{{frames}}/rendered"), get(render::frame_rendered))
        .route(&format!("{instance}/frames/{{frames}}/thumbnail"), get(render::frame_thumbnail))
        .route(&format!("{instance}/bulkdata/{{*path}}"), get(wado::bulkdata))
}

async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> Result<&'static str> {
    let archive = Arc::clone(&state.archive);
    blocking(move || archive.stats()).await?;
    Ok("ok\n")
}

/// The DICOMweb face as an axum [`Router`], with its endpoints under `config.base_path`, CORS
/// (when origins are configured) and a `tracing` span per request.
pub fn router(archive: Arc<Archive>, config: WebConfig) -> Router {
    let base = normalise_base(&config.base_path);
    let cors = cors_layer(&config.cors_origins);
    let stow_turns = Arc::new(tokio::sync::Semaphore::new(config.max_stow_requests.clamp(1, tokio::sync::Semaphore::MAX_PERMITS)));
    let state = AppState { archive, config: Arc::new(config), committer: Arc::default(), stow_turns };
    let routes = routes().with_state(state);
    let app = if base.is_empty() { routes } else { Router::new().nest(&base, routes) };
    let app = app.fallback(|| async { (StatusCode::NOT_FOUND, "no such DICOMweb resource\n") });
    let trace = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO))
        .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO));
    let app = app.layer(trace);
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new().allow_methods([Method::GET, Method::POST, Method::OPTIONS]).allow_headers(Any).expose_headers([
        header::CONTENT_TYPE,
        header::WARNING,
        header::CONTENT_LENGTH,
    ]);
    if origins.iter().any(|o| o == "*") {
        return Some(layer.allow_origin(Any));
    }
    let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(layer.allow_origin(AllowOrigin::list(list)))
}

/// A DICOMweb server bound to a socket, serving an [`Archive`].
///
/// ```no_run
/// use std::sync::Arc;
/// use pacs_net::web::{WebConfig, WebServer};
/// use pacs_store::{Archive, ArchiveConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let archive = Arc::new(Archive::open("/var/lib/pacs".as_ref(), ArchiveConfig::default())?);
/// let config = WebConfig { base_path: "/dicom-web".into(), cors_origins: vec!["*".into()], ..WebConfig::default() };
/// let server = WebServer::bind("127.0.0.1:8042".parse()?, archive, config).await?;
/// println!("DICOMweb on http://{}/dicom-web", server.local_addr()?);
/// server.serve(std::future::pending()).await?; // or a shutdown signal
/// # Ok(())
/// # }
/// ```
pub struct WebServer {
    listener: TcpListener,
    app: Router,
}

impl WebServer {
    /// Binds the server to `address` (port 0 picks a free port; see [`local_addr`](Self::local_addr)).
    pub async fn bind(address: SocketAddr, archive: Arc<Archive>, config: WebConfig) -> Result<WebServer> {
        let listener = TcpListener::bind(address).await.map_err(|source| Error::Io { action: format!("listening on {address}"), source })?;
        Ok(WebServer { listener, app: router(archive, config) })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|source| Error::Io { action: "reading the listening address".into(), source })
    }

    /// Serves requests until `shutdown` completes, then lets requests in progress finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        use axum::serve::ListenerExt;
        // Without TCP_NODELAY the last small write of a response waits for the client's delayed
        // ACK on a kept-alive connection (about 40 ms on loopback).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, self.app).with_graceful_shutdown(shutdown).await.map_err(|source| Error::Io { action: "serving DICOMweb".into(), source })
    }
}
