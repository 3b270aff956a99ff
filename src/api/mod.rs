//! Docker's Engine API (version 1.41, what docker 20.10 speaks) on a unix
//! socket or a loopback port, served by `kiln system service` only while
//! something calls it: a thin layer of HTTP over the same library calls as
//! the CLI. What it does not implement answers 501 with a message naming
//! it, never a silent success.

mod build;
mod containers;
mod events;
mod images;
mod objects;
mod system;
pub mod tls;
mod wire;

use crate::store::Store;
use axum::Router;
use axum::http::{Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The API version served (docker 20.10's).
pub const API_VERSION: &str = "1.41";

/// Where and how long to serve.
#[derive(Debug, Clone)]
pub struct Options {
    /// A unix socket to listen on.
    pub socket: Option<PathBuf>,
    /// A TCP address to listen on (loopback only, unless `tls`).
    pub listen: Option<std::net::SocketAddr>,
    /// TLS with client certificates for `listen`.
    pub tls: Option<tls::TlsFiles>,
    /// Stop after this long without a request (zero: never).
    pub timeout: Duration,
    /// What Docker's default network mode (`default`, `bridge`) gives a
    /// container.
    pub bridge: Bridge,
}

/// What a container of Docker's default network mode gets: kiln has no
/// default bridge, so either the host's network (kiln's own default) or,
/// as `dockerd --bridge=none` gives, a namespace of its own with loopback
/// only (`kiln system service --bridge none`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Bridge {
    /// The host's network (a namespace of its own when ports are published).
    #[default]
    Host,
    /// A network namespace of its own with loopback only, shown as docker
    /// shows its default bridge's endpoint; it can be connected to
    /// networks while it runs.
    None,
}

/// What every handler shares.
pub(crate) struct State {
    store: Store,
    /// Exec instances made by `POST /containers/ID/exec`, by id.
    execs: std::sync::Mutex<std::collections::HashMap<String, containers::ExecInstance>>,
    /// Held shared by every request that writes blobs no name reaches yet
    /// (a build, a pull, a load, a commit) and exclusively by
    /// `/images/prune`, which would take them for garbage: the store's own
    /// lock tells other kiln processes apart, not this one's requests.
    gc: Arc<tokio::sync::RwLock<()>>,
    /// Seconds since the epoch of the last request's end.
    last: AtomicU64,
    in_flight: AtomicUsize,
    /// What the default network mode gives.
    bridge: Bridge,
}

type Shared = Arc<State>;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An error as Docker's API answers it: a status and `{"message": ...}`.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError(status, message.into())
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "message": self.1 }))).into_response()
    }
}

impl From<crate::container::ContainerError> for ApiError {
    fn from(e: crate::container::ContainerError) -> ApiError {
        use crate::container::ContainerError as E;
        let status = match &e {
            E::NotFound(_) | E::NoSuchPath { .. } => StatusCode::NOT_FOUND,
            E::NameInUse { .. } | E::Conflict(_) => StatusCode::CONFLICT,
            E::Invalid(_) | E::Ambiguous(_) | E::Port(_) => StatusCode::BAD_REQUEST,
            E::Image(i) => image_status(i),
            E::Network(n) => network_status(n),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// The status docker answers a network error with.
fn network_status(e: &crate::network::NetworkError) -> StatusCode {
    use crate::network::NetworkError as E;
    match e {
        E::NotFound(_) => StatusCode::NOT_FOUND,
        E::Exists(_) | E::InUse { .. } => StatusCode::CONFLICT,
        E::Invalid(_) | E::Full(_) | E::NoPasta => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<crate::network::NetworkError> for ApiError {
    fn from(e: crate::network::NetworkError) -> ApiError {
        ApiError::new(network_status(&e), e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::internal(e.to_string())
    }
}

impl From<crate::image::ImageError> for ApiError {
    fn from(e: crate::image::ImageError) -> ApiError {
        ApiError::new(image_status(&e), e.to_string())
    }
}

/// The status Docker's API answers an image error with: a name no image
/// has, or no image of the platform asked, is 404; a request the client
/// got wrong (a bad name, a bad change, an archive or layer that is not
/// one, an ambiguous id prefix) 400; the store's own trouble 500.
fn image_status(e: &crate::image::ImageError) -> StatusCode {
    use crate::image::ImageError as E;
    match e {
        E::NotFound(_) | E::NoPlatform { .. } => StatusCode::NOT_FOUND,
        E::BadName(_) | E::BadChange { .. } | E::BadArchive(_) | E::Layer(_) | E::Ambiguous(_) => {
            StatusCode::BAD_REQUEST
        }
        E::NotAFile(_) => StatusCode::BAD_REQUEST,
        E::Store(_) | E::Read { .. } | E::Write { .. } | E::Output { .. } | E::Json(..) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// Runs blocking library work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("the request's work failed: {e}")))?
}

/// `/v1.41/containers/json` is `/containers/json`: clients put the version
/// they speak first.
fn strip_version<B>(mut req: Request<B>) -> Request<B> {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(i) = rest.find('/')
        && rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.')
        && !rest[..i].is_empty()
    {
        let mut new = rest[i..].to_string();
        if let Some(q) = req.uri().query() {
            new.push('?');
            new.push_str(q);
        }
        if let Ok(uri) = new.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// What a docker engine outside a swarm answers about swarm objects:
/// clients (docker-py's test teardown, compose) expect this 503.
const NOT_A_SWARM_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

/// True for the paths of swarm mode's objects.
fn is_swarm_path(path: &str) -> bool {
    ["swarm", "services", "nodes", "tasks", "secrets", "configs"]
        .iter()
        .any(|p| {
            path.strip_prefix('/')
                .and_then(|rest| rest.strip_prefix(p))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// 501 for what kiln does not implement, naming it; 503 for swarm mode,
/// as a docker engine that is not in a swarm says it.
async fn not_implemented(req: Request<axum::body::Body>) -> ApiError {
    let swarm = is_swarm_path(req.uri().path());
    let message = format!(
        "kiln does not implement {} {} of Docker's API",
        req.method(),
        req.uri().path()
    );
    // The body is read (up to a bound) before the answer: a client still
    // writing it would otherwise meet a closed connection, not the message.
    let _ = axum::body::to_bytes(req.into_body(), 1 << 20).await;
    match swarm {
        true => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, NOT_A_SWARM_MANAGER),
        false => ApiError::new(StatusCode::NOT_IMPLEMENTED, message),
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(build::routes())
        .merge(images::routes())
        .merge(containers::routes())
        .merge(objects::routes())
        .merge(events::routes())
        .fallback(not_implemented)
        .with_state(state)
}

/// Counts a request in flight and stamps its end (the idle timeout).
async fn track(
    axum::extract::State(state): axum::extract::State<Shared>,
    req: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> Response {
    /// Ends the count however the request ends: a handler that panicked
    /// (its task dropped mid-way) must not keep the service from idling.
    struct InFlight(Shared);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.0.last.store(now_secs(), Ordering::SeqCst);
        }
    }
    state.in_flight.fetch_add(1, Ordering::SeqCst);
    let _counted = InFlight(state);
    if std::env::var_os("KILN_API_LOG").is_some() {
        eprintln!("{} {}", req.method(), req.uri());
    }
    next.run(req).await
}

/// Resolves when the service has been idle for `timeout` (never for 0).
async fn idle(state: Shared, timeout: Duration) {
    if timeout.is_zero() {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let quiet = now_secs().saturating_sub(state.last.load(Ordering::SeqCst));
        if state.in_flight.load(Ordering::SeqCst) == 0 && quiet >= timeout.as_secs() {
            return;
        }
    }
}

/// Why the API service could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The TLS files could not be used.
    #[error("{0}")]
    Tls(String),
    /// A TCP address beyond loopback without client certificates.
    #[error(
        "--listen {0}: beyond loopback the API is served only with --tlsverify (client certificates); or use 127.0.0.1 or a unix socket"
    )]
    Exposed(std::net::SocketAddr),
    /// Neither a socket nor an address.
    #[error("give --socket PATH or --listen 127.0.0.1:PORT")]
    NoAddress,
    /// Rootless without a runtime directory for the default socket.
    #[error(
        "XDG_RUNTIME_DIR is not set, and a rootless socket is never put in a shared temp directory: log in through a session that sets it (systemd-logind does), or give --socket PATH in a directory of your own"
    )]
    NoRuntimeDir,
    /// The socket's directory is not safe, or cannot be made so.
    #[error("the socket's directory: {0}")]
    SocketDir(std::io::Error),
    /// Another service answers on the socket.
    #[error("{0} is in use: another service answers there")]
    InUse(PathBuf),
    /// Listening, or serving, failed.
    #[error("{action} {at}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The address or socket.
        at: String,
        /// Why.
        source: std::io::Error,
    },
}

impl ServiceError {
    /// True when the command line lacks what the service needs (exit 2);
    /// an address refused by policy is a refusal (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, ServiceError::NoAddress | ServiceError::NoRuntimeDir)
    }
}

fn service_io(
    action: &'static str,
    at: impl ToString,
) -> impl FnOnce(std::io::Error) -> ServiceError {
    let at = at.to_string();
    move |source| ServiceError::Io { action, at, source }
}

/// Serves the API until idle for `opts.timeout`.
pub async fn serve(store: Store, opts: Options) -> Result<(), ServiceError> {
    use tower::Layer;
    let state = Arc::new(State {
        store,
        execs: Default::default(),
        gc: Default::default(),
        last: AtomicU64::new(now_secs()),
        in_flight: AtomicUsize::new(0),
        bridge: opts.bridge,
    });
    let app =
        router(state.clone()).layer(axum::middleware::from_fn_with_state(state.clone(), track));
    let app = tower::util::MapRequestLayer::new(strip_version).layer(app);
    let service = axum::ServiceExt::<Request<axum::body::Body>>::into_make_service(app);
    // Idle for the timeout, or told to stop (SIGTERM, SIGINT): either
    // ends the service gracefully, its socket removed.
    let done = async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            _ => return idle(state, opts.timeout).await,
        };
        tokio::select! {
            () = idle(state, opts.timeout) => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    match (&opts.socket, opts.listen) {
        (_, Some(addr)) => {
            // Anyone who reaches the API owns the machine: beyond
            // loopback, only clients with a certificate the CA signed.
            let acceptor = opts
                .tls
                .as_ref()
                .map(tls::acceptor)
                .transpose()
                .map_err(ServiceError::Tls)?;
            if !addr.ip().is_loopback() && acceptor.is_none() {
                return Err(ServiceError::Exposed(addr));
            }
            if acceptor.is_none() && crate::sandbox::fs::is_root() {
                // dockerd says as much for -H tcp:// without TLS.
                eprintln!(
                    "warning: --listen {addr} without --tlsverify: every user of this host can reach the API, and whoever reaches it can run a privileged container (root on the host); prefer the unix socket, whose directory is root's alone"
                );
            }
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(service_io("listening on", addr))?;
            match acceptor {
                Some(acceptor) => {
                    let l = tls::Listener::new(l, acceptor)
                        .map_err(service_io("listening on", addr))?;
                    axum::serve(l, service)
                        .with_graceful_shutdown(done)
                        .await
                        .map_err(service_io("serving on", addr))
                }
                None => axum::serve(l, service)
                    .with_graceful_shutdown(done)
                    .await
                    .map_err(service_io("serving on", addr)),
            }
        }
        (Some(path), None) => {
            let l = bind_socket(path)?;
            let served = axum::serve(l, service)
                .with_graceful_shutdown(done)
                .await
                .map_err(service_io("serving on", path.display()));
            let _ = std::fs::remove_file(path);
            served
        }
        (None, None) => Err(ServiceError::NoAddress),
    }
}

/// Binds the unix socket at `path`: its directory made only for its owner
/// (0700) or refused when another user owns it or can write there (they
/// could have put their own socket in its place and answered the owner's
/// docker client, registry credentials included), a stale socket (nobody
/// listening) replaced, and the socket only for its owner and group
/// (root:root 0660 as root; the user's own, 0600, rootless).
fn bind_socket(path: &std::path::Path) -> Result<tokio::net::UnixListener, ServiceError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    crate::sandbox::fs::private_dir(dir, crate::sandbox::fs::Loose::Refuse)
        .map_err(ServiceError::SocketDir)?;
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServiceError::InUse(path.to_path_buf()));
    }
    let _ = std::fs::remove_file(path);
    let l =
        tokio::net::UnixListener::bind(path).map_err(service_io("listening on", path.display()))?;
    let mode = if crate::sandbox::fs::is_root() {
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(service_io("setting the mode of", path.display()))?;
    Ok(l)
}

/// The default socket: `/run/kiln/docker.sock` as root,
/// `$XDG_RUNTIME_DIR/kiln/docker.sock` otherwise. Never a shared temp
/// directory, where another user could make the directory first.
pub fn default_socket() -> Result<PathBuf, ServiceError> {
    match (
        crate::sandbox::fs::is_root(),
        std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()),
    ) {
        (false, Some(dir)) => Ok(PathBuf::from(dir).join("kiln/docker.sock")),
        (false, None) => Err(ServiceError::NoRuntimeDir),
        (true, _) => Ok(PathBuf::from("/run/kiln/docker.sock")),
    }
}

/// A query's `filters` (JSON: `{"key": ["value", ...]}`, or old clients'
/// `{"key": {"value": true}}`), refused when a key is not in `allowed`.
pub(crate) fn filters_of(
    q: &std::collections::HashMap<String, String>,
    allowed: &[&str],
) -> Result<std::collections::BTreeMap<String, Vec<String>>, ApiError> {
    use serde_json::Value;
    let mut out = std::collections::BTreeMap::new();
    let Some(text) = q.get("filters").filter(|t| !t.is_empty()) else {
        return Ok(out);
    };
    let v: Value =
        serde_json::from_str(text).map_err(|e| ApiError::bad(format!("invalid filters: {e}")))?;
    for (k, vals) in v.as_object().into_iter().flatten() {
        let list: Vec<String> = match vals {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            Value::Object(o) => o.keys().cloned().collect(),
            _ => Vec::new(),
        };
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad(format!("invalid filter '{k}'")));
        }
        out.insert(k.clone(), list);
    }
    Ok(out)
}

/// Writes a request's body to `file` as it arrives (a context, an archive,
/// a tarball: they may be large); `what` names it in errors.
pub(crate) async fn body_to_file(
    body: axum::body::Body,
    mut file: &std::fs::File,
    what: &str,
) -> Result<(), ApiError> {
    use futures::StreamExt;
    use std::io::Write;
    let mut body = body.into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad(format!("reading the {what}: {e}")))?;
        file.write_all(&chunk)
            .map_err(|e| ApiError::internal(format!("writing the {what}: {e}")))?;
    }
    Ok(())
}

/// A query string's flag as Docker reads it: `1`, `true`, `True`.
pub(crate) fn flag(v: Option<&String>) -> bool {
    v.is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_errors_answer_with_the_status_their_cause_means() {
        use crate::image::ImageError as E;
        let status = |e: E| ApiError::from(e).0;
        assert_eq!(status(E::NotFound("a".into())), StatusCode::NOT_FOUND);
        assert_eq!(status(E::BadName("A:".into())), StatusCode::BAD_REQUEST);
        assert_eq!(status(E::BadArchive("x".into())), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(E::Store(crate::store::StoreError::MissingBlob(
                crate::store::Digest::of(b"x")
            ))),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let missing = crate::container::ContainerError::Image(E::NotFound("a".into()));
        assert_eq!(ApiError::from(missing).0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn versions_are_stripped_from_paths() {
        let r = strip_version(
            Request::builder()
                .uri("/v1.41/containers/json?all=1")
                .body(())
                .unwrap(),
        );
        assert_eq!(r.uri().to_string(), "/containers/json?all=1");
        let r = strip_version(Request::builder().uri("/_ping").body(()).unwrap());
        assert_eq!(r.uri().to_string(), "/_ping");
        let r = strip_version(Request::builder().uri("/volumes/v1/x").body(()).unwrap());
        assert_eq!(r.uri().to_string(), "/volumes/v1/x");
    }

    #[test]
    fn swarm_paths_are_told_apart() {
        for p in [
            "/swarm",
            "/swarm/init",
            "/services",
            "/nodes/x",
            "/secrets/create",
        ] {
            assert!(is_swarm_path(p), "{p}");
        }
        for p in ["/swarmy", "/containers/json", "/servicesx", "/"] {
            assert!(!is_swarm_path(p), "{p}");
        }
    }
}
