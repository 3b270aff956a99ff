//! `/_ping`, `/version`, `/info`.

use super::{API_VERSION, Shared};
use axum::Json;
use axum::extract::State;
use axum::http::header::HeaderName;
use axum::response::IntoResponse;
use axum::routing::get;

pub(super) fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
}

/// What a client reads before anything else: the API version it may use.
async fn ping() -> impl IntoResponse {
    (
        [
            (HeaderName::from_static("api-version"), API_VERSION),
            (HeaderName::from_static("builder-version"), "1"),
            (HeaderName::from_static("docker-experimental"), "false"),
            (HeaderName::from_static("ostype"), "linux"),
            (
                HeaderName::from_static("cache-control"),
                "no-cache, no-store, must-revalidate",
            ),
        ],
        "OK",
    )
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn version() -> Json<serde_json::Value> {
    let v = env!("CARGO_PKG_VERSION");
    Json(serde_json::json!({
        "Platform": { "Name": "kiln" },
        "Components": [{ "Name": "Engine", "Version": v, "Details": {
            "ApiVersion": API_VERSION, "MinAPIVersion": "1.24", "Os": "linux", "Arch": arch(),
        } }],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": "1.24",
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel(),
        "BuildTime": "",
    }))
}

async fn info(State(state): State<Shared>) -> Result<Json<serde_json::Value>, super::ApiError> {
    super::blocking(move || {
        let store = &state.store;
        let containers = crate::container::list(store)?;
        let running = containers.iter().filter(|c| c.state().is_running()).count();
        let images = store.tags()?.len();
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let mem = crate::sandbox::process::memory_total();
        let cgroup2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        Ok(Json(serde_json::json!({
            "ID": "kiln",
            "Containers": containers.len(),
            "ContainersRunning": running,
            "ContainersPaused": 0,
            "ContainersStopped": containers.len() - running,
            "Images": images,
            "Driver": "overlay",
            "DriverStatus": [],
            "Name": hostname,
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "OperatingSystem": "kiln",
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "KernelVersion": kernel(),
            "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "MemTotal": mem,
            "DockerRootDir": store.root(),
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": if cgroup2 { "2" } else { "1" },
            "Runtimes": { "kiln": { "path": "kiln" } },
            "DefaultRuntime": "kiln",
            "SecurityOptions": ["name=seccomp,profile=default"],
            "Plugins": { "Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["k8s-file"] },
            "Swarm": { "LocalNodeState": "inactive" },
            "Debug": false,
            "ExperimentalBuild": false,
            "Warnings": [],
        })))
    })
    .await
}
