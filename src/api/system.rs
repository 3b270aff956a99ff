//! `/_ping`, `/version`, `/info`, `/system/df`.

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
        .route("/system/df", get(df))
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
        let images = store
            .images()?
            .iter()
            .map(|(_, d)| d.digest().to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
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

/// `GET /system/df` (`docker system df -v`): the images, containers and
/// volumes with what they take; the layers' bytes counted once.
async fn df(State(state): State<Shared>) -> Result<Json<serde_json::Value>, super::ApiError> {
    super::blocking(move || {
        let store = &state.store;
        let rows = crate::container::disk_use(store)?;
        let layers = rows
            .iter()
            .find(|r| r.kind == "Images")
            .map_or(0, |r| r.size);
        let all = crate::container::list(store)?;
        let containers: Vec<serde_json::Value> = all
            .iter()
            .map(|c| {
                let mut v = super::containers::summary(c, &all);
                v["SizeRw"] = crate::store::gc::dir_size(&c.record.spec.upper).into();
                v["SizeRootFs"] = 0.into();
                v
            })
            .collect();
        let volumes: Vec<serde_json::Value> = crate::container::volume::list(store)
            .iter()
            .map(|v| {
                let mut j = super::objects::volume_json(v);
                j["UsageData"] = serde_json::json!({
                    "Size": crate::store::gc::dir_size(&v.mountpoint),
                    "RefCount": crate::container::volume::users(store, v).len(),
                });
                j
            })
            .collect();
        Ok(Json(serde_json::json!({
            "LayersSize": layers,
            "Images": super::images::summaries(store)?,
            "Containers": containers,
            "Volumes": volumes,
            "BuildCache": [],
        })))
    })
    .await
}
