//! `/containers/...`: list, create, start, stop, kill, restart, wait,
//! inspect, logs, remove, prune.

use super::wire::{every, first, string_pairs, tokio_stream, url_pairs};
use super::{ApiError, Shared, blocking, flag};
use crate::container::options;
use crate::container::stats::Sample;
use crate::container::{self, Container, logs, monitor, ports, volume};
use crate::sandbox::{Limits, Network};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

type Q = Query<HashMap<String, String>>;

pub(super) fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/containers/json", get(list))
        .route("/containers/create", post(create))
        .route("/containers/prune", post(prune))
        .route("/containers/{id}/json", get(inspect))
        .route("/containers/{id}/start", post(start))
        .route("/containers/{id}/stop", post(stop))
        .route("/containers/{id}/restart", post(restart))
        .route("/containers/{id}/kill", post(kill))
        .route("/containers/{id}/pause", post(pause))
        .route("/containers/{id}/unpause", post(unpause))
        .route("/containers/{id}/rename", post(rename))
        .route("/containers/{id}/changes", get(changes))
        .route("/containers/{id}/update", post(update))
        .route(
            "/containers/{id}/archive",
            get(archive_get).head(archive_head).put(archive_put),
        )
        .route("/containers/{id}/wait", post(wait))
        .route("/containers/{id}/logs", get(logs_of))
        .route("/containers/{id}/attach", post(attach))
        .route("/containers/{id}/resize", post(resize))
        .route("/containers/{id}/exec", post(exec_create))
        .route("/containers/{id}/top", get(top))
        .route("/containers/{id}/stats", get(stats))
        .route("/commit", post(commit))
        .route("/exec/{id}/start", post(exec_start))
        .route("/exec/{id}/json", get(exec_inspect))
        .route("/exec/{id}/resize", post(exec_resize))
        .route("/containers/{id}", delete(remove))
        // Any other method on a two-part path is an endpoint kiln lacks.
        .route(
            "/containers/{id}/{alias}",
            delete(remove_link).fallback(super::not_implemented),
        )
}

fn unix(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map_or(0, |t| t.timestamp())
}

/// A container as `GET /containers/json` lists it; `all` are every
/// container, whose legacy links to it are among its names.
pub(super) fn summary(c: &Container, all: &[Container]) -> Value {
    let st = c.state();
    let r = &c.record;
    let ports: Vec<Value> = match st.is_running() {
        true => r
            .ports
            .iter()
            .map(|p| {
                serde_json::json!({
                    "IP": p.host_ip.to_string(), "PrivatePort": p.port,
                    "PublicPort": p.host_port, "Type": p.proto.as_str(),
                })
            })
            .collect(),
        false => Vec::new(),
    };
    let networks: serde_json::Map<String, Value> = container::networks::settings(c)
        .into_iter()
        .map(|(a, net, e)| {
            (
                a.network,
                serde_json::json!({
                    "NetworkID": net.map(|n| n.id).unwrap_or_default(),
                    "IPAddress": e.map(|e| e.ip.to_string()).unwrap_or_default(),
                }),
            )
        })
        .collect();
    serde_json::json!({
        "Id": r.id,
        "Names": std::iter::once(format!("/{}", r.name))
            .chain(all.iter().flat_map(|o| {
                o.record
                    .legacy_links
                    .iter()
                    .filter(|(id, _)| *id == r.id)
                    .map(|(_, alias)| format!("/{}/{alias}", o.record.name))
            }))
            .collect::<Vec<_>>(),
        "Image": r.image,
        "ImageID": r.image_id,
        "Command": r.argv.join(" "),
        "Created": unix(&r.created),
        "Ports": ports,
        "Labels": r.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "State": st.docker_state(),
        "Status": st.docker_status(),
        "HostConfig": { "NetworkMode": container::inspect::network_mode(r) },
        "NetworkSettings": { "Networks": networks },
        "Mounts": [],
    })
}

async fn list(State(state): State<Shared>, Query(q): Q) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let filters = super::filters_of(&q, &container::filters::KEYS)?;
        let mut all = container::list(&state.store)?;
        all.reverse();
        let limit: Option<usize> = q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|&l| l > 0);
        let shown: Vec<Value> = all
            .iter()
            .filter(|c| flag(q.get("all")) || limit.is_some() || c.state().is_running())
            .filter(|c| container::filters::matches(c, &filters))
            .take(limit.unwrap_or(usize::MAX))
            .map(|c| summary(c, &all))
            .collect();
        Ok(Json(Value::Array(shown)))
    })
    .await
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(String::from)
}

/// The keys of a create's body kiln takes, and those that change nothing
/// it does (what the client itself acts on: the Attach* flags; what only
/// images have: OnBuild, Shell, ArgsEscaped; `Runtime`, which docker-py 5
/// sends here and dockerd's Config has no field for).
const CONFIG_KEYS: &[&str] = &[
    "HostConfig",
    "NetworkingConfig",
    "Image",
    "Cmd",
    "Entrypoint",
    "Env",
    "Labels",
    "WorkingDir",
    "User",
    "Hostname",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "ExposedPorts",
    "Volumes",
    "Healthcheck",
    "MacAddress",
    "StopSignal",
    "StopTimeout",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "OnBuild",
    "Shell",
    "ArgsEscaped",
    "Runtime",
];

/// The HostConfig keys kiln takes, and those the client acts on itself
/// (ContainerIDFile, ConsoleSize: a tty's size comes by resize).
const HOST_CONFIG_KEYS: &[&str] = &[
    "Binds",
    "Mounts",
    "Tmpfs",
    "VolumesFrom",
    "VolumeDriver",
    "PortBindings",
    "PublishAllPorts",
    "NetworkMode",
    "Links",
    "Dns",
    "ExtraHosts",
    "RestartPolicy",
    "AutoRemove",
    "LogConfig",
    "Memory",
    "MemorySwap",
    "MemorySwappiness",
    "NanoCpus",
    "CpuShares",
    "CpusetCpus",
    "PidsLimit",
    "Ulimits",
    "DeviceCgroupRules",
    "CapAdd",
    "CapDrop",
    "GroupAdd",
    "Sysctls",
    "SecurityOpt",
    "ReadonlyRootfs",
    "ShmSize",
    "Init",
    "Runtime",
    "Isolation",
    "UTSMode",
    "PidMode",
    "IpcMode",
    "CgroupnsMode",
    "ContainerIDFile",
    "ConsoleSize",
];

/// The keys of `obj` that are not among `known` and ask for something (a
/// value other than docker's zero: null, false, 0, "", [], {}): what kiln
/// would otherwise drop silently.
fn asked_but_not_taken(obj: &Value, known: &[&str], prefix: &str) -> Vec<String> {
    let zero = |v: &Value| match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    };
    obj.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| !known.contains(&k.as_str()) && !zero(v))
        .map(|(k, _)| format!("{prefix}{k}"))
        .collect()
}

/// The body of `POST /containers/create` as kiln's `Create`; options kiln
/// does not take are refused by name (501), never dropped.
fn create_opts(
    store: &crate::store::Store,
    bridge: super::Bridge,
    body: &Value,
    name: Option<String>,
) -> Result<container::Create, ApiError> {
    let hc = &body["HostConfig"];
    let mut unsupported = asked_but_not_taken(body, CONFIG_KEYS, "");
    unsupported.extend(asked_but_not_taken(hc, HOST_CONFIG_KEYS, "HostConfig."));
    if !unsupported.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("kiln's API does not take {} yet", unsupported.join(", ")),
        ));
    }
    let image = text(&body["Image"]).ok_or_else(|| ApiError::bad("Image is required"))?;
    let image = super::wire::familiar(&image).to_string();
    let mut command = strings(&body["Cmd"]);
    let entry = strings(&body["Entrypoint"]);
    let entrypoint = match entry.split_first() {
        Some((first, rest)) => {
            // Docker's Entrypoint is a list; kiln's is one program, the
            // rest of the list going before the command.
            command = rest.iter().cloned().chain(command).collect();
            Some(first.clone())
        }
        None if body["Entrypoint"].is_array() => Some(String::new()),
        None => None,
    };
    let mut binds = Vec::new();
    let mut volumes = Vec::new();
    // `Config.Volumes` (`{"/data": {}}`): anonymous volumes there.
    let mut anonymous: Vec<String> = body["Volumes"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    for b in strings(&hc["Binds"]) {
        match volume::parse_flag(&b).map_err(ApiError::bad)? {
            volume::Flag::Anonymous(target) => anonymous.push(target),
            volume::Flag::Named(n, t, ro) => volumes.push((n, t, ro)),
            volume::Flag::Bind(b) => {
                volume::ensure_source(&b)?;
                binds.push(b);
            }
        }
    }
    // Mounts and tmpfs as `kiln run`'s --mount and --tmpfs take them.
    let mut tmpfs = Vec::new();
    for m in hc["Mounts"].as_array().into_iter().flatten() {
        let spec = options::MountSpec {
            kind: text(&m["Type"]).unwrap_or_else(|| "volume".into()),
            source: text(&m["Source"]),
            target: text(&m["Target"]).unwrap_or_default(),
            readonly: m["ReadOnly"].as_bool() == Some(true),
            propagation: text(&m["BindOptions"]["Propagation"]),
            driver: text(&m["VolumeOptions"]["DriverConfig"]["Name"]),
            tmpfs_size: m["TmpfsOptions"]["SizeBytes"].as_u64().filter(|&n| n > 0),
        };
        match options::mount(&spec).map_err(|e| ApiError::bad(format!("invalid mount: {e}")))? {
            options::Mounted::Bind(b) => {
                volume::ensure_source(&b)?;
                binds.push(b);
            }
            options::Mounted::Volume(n, t, ro) => volumes.push((n, t, ro)),
            options::Mounted::Tmpfs(t) => tmpfs.push(t),
        }
    }
    let tmpfs_opts = string_pairs(&hc["Tmpfs"]);
    for (target, opts) in &tmpfs_opts {
        tmpfs.push(options::tmpfs(target, opts).map_err(ApiError::bad)?);
    }
    let capabilities =
        options::capabilities(false, &strings(&hc["CapAdd"]), &strings(&hc["CapDrop"]))
            .map_err(ApiError::bad)?;
    // `[{"Name": "nofile", "Soft": 1024, "Hard": 2048}]`, checked as
    // `--ulimit nofile=1024:2048`.
    let mut rlimits = Vec::new();
    for u in hc["Ulimits"].as_array().into_iter().flatten() {
        let limit = |v: &Value| match v.as_i64() {
            Some(-1) => "-1".to_string(),
            Some(n) => n.to_string(),
            None => v.to_string(),
        };
        let spec = format!(
            "{}={}:{}",
            u["Name"].as_str().unwrap_or_default(),
            limit(&u["Soft"]),
            limit(&u["Hard"])
        );
        rlimits.push(crate::sandbox::Rlimit::parse(&spec).map_err(ApiError::bad)?);
    }
    // Ids or names, numbers too (docker-py sends ints).
    let extra_groups: Vec<String> = hc["GroupAdd"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| match g {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let mut published = Vec::new();
    for (key, list) in hc["PortBindings"].as_object().into_iter().flatten() {
        for binding in list.as_array().into_iter().flatten() {
            let ip = text(&binding["HostIp"]).unwrap_or_else(|| "0.0.0.0".into());
            let host = text(&binding["HostPort"]).unwrap_or_default();
            published.extend(parse_binding(&ip, &host, key)?);
        }
    }
    if hc["PublishAllPorts"].as_bool() == Some(true) {
        let exposed: Vec<String> = body["ExposedPorts"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let from_image = crate::image::Image::resolve(store, &image)
            .ok()
            .and_then(|i| i.config.config.exposed_ports.clone())
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        for key in exposed.iter().chain(&from_image) {
            let found = ports::parse(key).map_err(ApiError::bad)?;
            if !published
                .iter()
                .any(|p: &ports::Port| p.port == found[0].port && p.proto == found[0].proto)
            {
                published.extend(found);
            }
        }
    }
    let mode = text(&hc["NetworkMode"]).unwrap_or_else(|| "default".into());
    let endpoints = &body["NetworkingConfig"]["EndpointsConfig"];
    let mut default_bridge = None;
    // HostConfig.Links: on a user network its endpoint's links; on the
    // default one docker's legacy links.
    let links: Vec<String> = strings(&hc["Links"])
        .iter()
        .map(|l| l.trim_start_matches('/').to_string())
        .collect();
    let mut legacy_links = Vec::new();
    let (network, mut networks) = match mode.as_str() {
        "host" if !links.is_empty() => {
            return Err(ApiError::bad(
                "conflicting options: host type networking can't be used with links. This would result in undefined behavior",
            ));
        }
        "host" => (Network::Host, Vec::new()),
        "none" => (Network::None, Vec::new()),
        // dockerd --bridge=none's: a namespace of its own with loopback
        // only, the endpoint asked for shown under "bridge".
        "default" | "bridge" if bridge == super::Bridge::None => {
            let mut a = attachment("bridge", &endpoints["bridge"])?;
            a.network = mode.clone();
            default_bridge = Some(a);
            legacy_links = links.clone();
            (Network::None, Vec::new())
        }
        // Docker's default is its bridge; kiln's is the host's network
        // (a namespace of its own when ports are published).
        "default" | "bridge" => match published.is_empty() {
            true => (Network::Host, Vec::new()),
            false => (Network::None, Vec::new()),
        },
        name => (Network::None, vec![attachment(name, &endpoints[name])?]),
    };
    match networks.first_mut() {
        Some(a) => a.links.extend(links),
        None if default_bridge.is_none() && !links.is_empty() => {
            return Err(ApiError::bad(format!(
                "links need a network: network mode {mode:?} has none to resolve them on"
            )));
        }
        None => {}
    }
    let restart = restart_policy(&hc["RestartPolicy"])?.unwrap_or_default();
    let labels = string_pairs(&body["Labels"]);
    let memory = hc["Memory"]
        .as_u64()
        .filter(|&m| m > 0)
        .map(options::check_memory)
        .transpose()
        .map_err(ApiError::bad)?;
    let host = options::HostOptions {
        runtime: text(&hc["Runtime"]).unwrap_or_default(),
        isolation: text(&hc["Isolation"]).unwrap_or_default(),
        init: hc["Init"].as_bool(),
        uts_mode: text(&hc["UTSMode"]).unwrap_or_default(),
        pid_mode: text(&hc["PidMode"]).unwrap_or_default(),
        ipc_mode: text(&hc["IpcMode"]).unwrap_or_default(),
        cgroupns_mode: text(&hc["CgroupnsMode"]).unwrap_or_default(),
        volume_driver: text(&hc["VolumeDriver"]).unwrap_or_default(),
        mac_address: text(&body["MacAddress"]).unwrap_or_default(),
        device_cgroup_rules: strings(&hc["DeviceCgroupRules"]),
        memory_swappiness: hc["MemorySwappiness"].as_i64(),
    };
    host.check().map_err(ApiError::bad)?;
    let security = options::security(&strings(&hc["SecurityOpt"]), false).map_err(ApiError::bad)?;
    let log_config: Vec<(String, String)> = string_pairs(&hc["LogConfig"]["Config"]);
    let log = container::options::log_options(
        hc["LogConfig"]["Type"].as_str().unwrap_or(""),
        log_config.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map_err(ApiError::bad)?;
    Ok(container::Create {
        image,
        name,
        command,
        entrypoint,
        env: strings(&body["Env"]),
        binds,
        volumes,
        workdir: text(&body["WorkingDir"]),
        user: text(&body["User"]),
        hostname: text(&body["Hostname"]),
        network,
        networks,
        default_bridge,
        limits: Limits {
            memory,
            cpus: hc["NanoCpus"]
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as f64 / 1e9),
            pids: hc["PidsLimit"]
                .as_i64()
                .filter(|&p| p > 0)
                .map(|p| p as u64),
            cpu_shares: hc["CpuShares"].as_u64().filter(|&s| s > 0),
            cpuset_cpus: text(&hc["CpusetCpus"]),
            memory_swap: hc["MemorySwap"].as_i64().filter(|&s| s != 0),
            devices: host.device_cgroup_rules.clone(),
            swappiness: host.memory_swappiness.filter(|&s| s >= 0).map(|s| s as u64),
            ..Limits::default()
        },
        host,
        read_only: hc["ReadonlyRootfs"].as_bool() == Some(true),
        tty: body["Tty"].as_bool() == Some(true),
        open_stdin: body["OpenStdin"].as_bool() == Some(true),
        stdin_once: body["StdinOnce"].as_bool() == Some(true),
        auto_remove: hc["AutoRemove"].as_bool() == Some(true),
        restart,
        stop_signal: text(&body["StopSignal"]),
        stop_timeout: body["StopTimeout"].as_u64(),
        labels,
        shm_size: hc["ShmSize"].as_u64().filter(|&s| s > 0),
        extra_hosts: strings(&hc["ExtraHosts"])
            .iter()
            .map(|h| options::parse_add_host(h).map_err(ApiError::bad))
            .collect::<Result<_, _>>()?,
        dns: strings(&hc["Dns"]),
        ports: published,
        log_max_size: log.max_size,
        log_driver: log.driver.clone(),
        log_max_files: log.max_files,
        log_opts: log.given,
        tmpfs,
        tmpfs_opts: tmpfs_opts.into_iter().collect(),
        health: match &body["Healthcheck"] {
            Value::Null => None,
            h => Some(
                serde_json::from_value(h.clone())
                    .map_err(|e| ApiError::bad(format!("Healthcheck: {e}")))?,
            ),
        },
        capabilities,
        extra_groups,
        sysctls: string_pairs(&hc["Sysctls"]),
        anonymous_volumes: anonymous,
        volumes_from: strings(&hc["VolumesFrom"]),
        legacy_links,
        rlimits,
        seccomp: security.seccomp,
        no_new_privileges: security.no_new_privileges,
        platform: None,
    })
}

/// How a container joins network `name`, from Docker's EndpointConfig
/// (`Aliases`, `Links`, `DriverOpts`, `IPAMConfig`): create's and connect's.
pub(super) fn attachment(name: &str, ep: &Value) -> Result<crate::network::Attachment, ApiError> {
    let ipam = &ep["IPAMConfig"];
    let ip = ipam["IPv4Address"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| ApiError::bad(format!("invalid IPv4 address {s:?}")))
        })
        .transpose()?;
    let ip6 = ipam["IPv6Address"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| ApiError::bad(format!("invalid IPv6 address {s:?}")))
        })
        .transpose()?;
    let link_local_ips = strings(&ipam["LinkLocalIPs"]);
    for l in &link_local_ips {
        l.parse::<std::net::IpAddr>()
            .map_err(|_| ApiError::bad(format!("invalid link-local address {l:?}")))?;
    }
    let links = strings(&ep["Links"]);
    for l in &links {
        let target = l.split_once(':').map_or(l.as_str(), |(t, _)| t);
        if target.trim_start_matches('/').is_empty() {
            return Err(ApiError::bad(format!("invalid link {l:?}: NAME[:ALIAS]")));
        }
    }
    Ok(crate::network::Attachment {
        network: name.to_string(),
        aliases: strings(&ep["Aliases"]),
        ip,
        ip6,
        mac: text(&ep["MacAddress"]).map(|m| m.to_ascii_lowercase()),
        links: links
            .iter()
            .map(|l| l.trim_start_matches('/').to_string())
            .collect(),
        driver_opts: string_pairs(&ep["DriverOpts"]),
        link_local_ips,
    })
}

/// One `PortBindings` entry: `80/tcp` with a host address and port.
fn parse_binding(ip: &str, host: &str, key: &str) -> Result<Vec<ports::Port>, ApiError> {
    let spec = match host {
        "" => key.to_string(),
        h => format!("{ip}:{h}:{key}"),
    };
    let mut found = ports::parse(&spec).map_err(ApiError::bad)?;
    if host.is_empty() {
        let ip = ip
            .parse()
            .map_err(|_| ApiError::bad(format!("invalid HostIp {ip:?}")))?;
        for p in &mut found {
            p.host_ip = ip;
        }
    }
    Ok(found)
}

async fn create(
    State(state): State<Shared>,
    Query(q): Q,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    blocking(move || {
        let name = q.get("name").filter(|n| !n.is_empty()).cloned();
        let mut opts = create_opts(&state.store, state.bridge, &body, name)?;
        // `?platform=linux/arm64` (API 1.41): that platform's image of a
        // multi-platform one.
        if let Some(p) = q.get("platform").filter(|p| !p.is_empty()) {
            let p = crate::registry::Platform::from_user(p).map_err(ApiError::bad)?;
            opts.platform = Some(p);
        }
        if crate::image::Image::resolve_for(&state.store, &opts.image, opts.platform.as_ref())
            .is_err()
        {
            return Err(ApiError::not_found(format!(
                "No such image: {}",
                opts.image
            )));
        }
        let (c, dirs) = container::create(&state.store, &opts)?;
        drop(dirs);
        Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({ "Id": c.record.id, "Warnings": [] })),
        ))
    })
    .await
}

fn find(state: &Shared, id: &str) -> Result<Container, ApiError> {
    Ok(container::find(&state.store, id)?)
}

async fn inspect(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || Ok(Json(container::inspect::docker_json(&find(&state, &id)?)))).await
}

async fn start(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let c = find(&state, &id)?;
        if c.state().is_running() {
            return Ok(StatusCode::NOT_MODIFIED);
        }
        monitor::spawn(state.store.root(), &c).map_err(|e| ApiError::internal(e.message))?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn stop(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let c = find(&state, &id)?;
        if !c.state().is_running() {
            return Ok(StatusCode::NOT_MODIFIED);
        }
        let t = q.get("t").and_then(|t| t.parse().ok());
        c.stop(t, q.get("signal").map(String::as_str))?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn restart(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let c = find(&state, &id)?;
        let t = q.get("t").and_then(|t| t.parse().ok());
        c.stop(t, None)?;
        monitor::spawn(state.store.root(), &c).map_err(|e| ApiError::internal(e.message))?;
        c.event("restart", []);
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn kill(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let c = find(&state, &id)?;
        if !c.state().is_running() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("Container {} is not running", c.record.id),
            ));
        }
        let name = q.get("signal").cloned().unwrap_or_else(|| "SIGKILL".into());
        let sig = crate::sandbox::process::signal_number(&name)
            .ok_or_else(|| ApiError::bad(format!("Invalid signal: {name}")))?;
        if sig == 9 {
            c.kill_all()?;
        } else {
            c.signal(sig)?;
        }
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `POST /containers/ID/pause`: its processes frozen.
async fn pause(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        find(&state, &id)?.pause()?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// The `X-Docker-Container-Path-Stat` header: the stat as base64 JSON.
fn path_stat_header(stat: &container::archive::PathStat) -> (&'static str, String) {
    use base64::Engine;
    let json = serde_json::to_vec(stat).unwrap_or_default();
    (
        "X-Docker-Container-Path-Stat",
        base64::engine::general_purpose::STANDARD.encode(json),
    )
}

fn archive_path(q: &HashMap<String, String>) -> Result<String, ApiError> {
    q.get("path")
        .filter(|p| !p.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::bad("path is required"))
}

/// `HEAD /containers/ID/archive?path=P`: what P is, in the header.
async fn archive_head(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    blocking(move || {
        let path = archive_path(&q)?;
        let view = container::archive::open(&find(&state, &id)?)?;
        let stat = view.stat(&path)?;
        Ok([path_stat_header(&stat)].into_response())
    })
    .await
}

/// `GET /containers/ID/archive?path=P` (`docker cp CONTAINER:P ...`): P
/// as a tar, streamed as it is written, with its stat in the header.
async fn archive_get(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let (view, path, stat) = blocking(move || {
        let path = archive_path(&q)?;
        let view = container::archive::open(&find(&state, &id)?)?;
        let stat = view.stat(&path)?;
        Ok((view, path, stat))
    })
    .await?;
    let body = super::wire::written_body(move |out| {
        view.tar(&path, &container::archive::rebase_name(&path), out)
            .map_err(|e| e.to_string())
    });
    Ok((
        [
            ("content-type", "application/x-tar".to_string()),
            path_stat_header(&stat),
        ],
        body,
    )
        .into_response())
}

/// `PUT /containers/ID/archive?path=DIR` (`docker cp ... CONTAINER:DIR`):
/// the tar in the body put into DIR.
async fn archive_put(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
    body: axum::body::Body,
) -> Result<StatusCode, ApiError> {
    let tmp = tempfile::NamedTempFile::new()
        .map_err(|e| ApiError::internal(format!("a file for the archive: {e}")))?;
    super::body_to_file(body, tmp.as_file(), "archive").await?;
    blocking(move || {
        let path = archive_path(&q)?;
        let flag = |k: &str| q.get(k).is_some_and(|v| v == "1" || v == "true");
        let opts = container::archive::PutOptions {
            no_overwrite_dir_non_dir: flag("noOverwriteDirNonDir"),
            copy_uid_gid: flag("copyUIDGID"),
        };
        let view = container::archive::open(&find(&state, &id)?)?;
        let file = tmp
            .reopen()
            .map_err(|e| ApiError::internal(format!("reading the archive: {e}")))?;
        view.put(&path, file, opts, &state.store.temp_path("cp"))?;
        Ok(StatusCode::OK)
    })
    .await
}

/// `POST /containers/ID/update`: resources and the restart policy.
async fn update(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        // Keys kiln keeps no setting for are refused by name, not dropped.
        let known = [
            "Memory",
            "MemorySwap",
            "NanoCpus",
            "CpuShares",
            "CpusetCpus",
            "PidsLimit",
            "RestartPolicy",
        ];
        let unsupported: Vec<&String> = body
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| !known.contains(&k.as_str()) && !is_unset(v))
            .map(|(k, _)| k)
            .collect();
        if !unsupported.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("kiln cannot update {unsupported:?} yet"),
            ));
        }
        let restart = restart_policy(&body["RestartPolicy"])?;
        let u = container::Update {
            memory: body["Memory"].as_u64().filter(|&m| m > 0),
            memory_swap: body["MemorySwap"].as_i64().filter(|&s| s != 0),
            cpus: body["NanoCpus"]
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as f64 / 1e9),
            cpu_shares: body["CpuShares"].as_u64().filter(|&s| s > 0),
            cpuset_cpus: text(&body["CpusetCpus"]),
            pids: body["PidsLimit"]
                .as_i64()
                .filter(|&p| p > 0)
                .map(|p| p as u64),
            restart,
        };
        let mut c = find(&state, &id)?;
        c.update(&u)?;
        Ok(Json(serde_json::json!({ "Warnings": [] })))
    })
    .await
}

/// Docker's `RestartPolicy` (`Name`, `MaximumRetryCount`); None when it
/// names none (create's and update's).
fn restart_policy(policy: &Value) -> Result<Option<container::Restart>, ApiError> {
    let Some(name) = text(&policy["Name"]) else {
        return Ok(None);
    };
    let spec = match (name.as_str(), policy["MaximumRetryCount"].as_u64()) {
        ("on-failure", Some(m)) if m > 0 => format!("on-failure:{m}"),
        _ => name,
    };
    container::Restart::parse(&spec)
        .map(Some)
        .map_err(ApiError::bad)
}

/// A key docker-py sends with no value: zero, empty, null or false.
fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// `GET /containers/ID/changes` (`docker diff`): `[{"Path", "Kind"}]`,
/// null when nothing changed, as dockerd answers.
async fn changes(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let found = container::changes::changes(&find(&state, &id)?)?;
        Ok(Json(match found.is_empty() {
            true => Value::Null,
            false => found
                .iter()
                .map(|c| serde_json::json!({ "Path": c.path, "Kind": c.kind as u8 }))
                .collect(),
        }))
    })
    .await
}

/// `POST /containers/ID/rename?name=NEW`.
async fn rename(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let name = q
            .get("name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad("the new name is required (name=NEW)"))?;
        let mut c = find(&state, &id)?;
        container::rename(&state.store, &mut c, name)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `POST /containers/ID/unpause`: its processes thawed.
async fn unpause(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        find(&state, &id)?.unpause()?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `POST /containers/ID/wait?condition=not-running|next-exit|removed`:
/// the status line and headers at once (a client starts the container
/// only once its wait is answered), the exit code in the body when the
/// condition is met.
async fn wait(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let c = blocking({
        let state = state.clone();
        move || find(&state, &id)
    })
    .await?;
    let condition = q
        .get("condition")
        .cloned()
        .unwrap_or_else(|| "not-running".into());
    if !["not-running", "next-exit", "removed"].contains(&condition.as_str()) {
        return Err(ApiError::bad(format!("invalid condition: {condition:?}")));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tokio::task::spawn_blocking(move || {
        let first = c.state();
        let code = loop {
            let st = c.state();
            let exited = !st.is_running() && st.status != crate::container::state::Status::Created;
            let gone = !c.dir.exists();
            let done = match condition.as_str() {
                "removed" => gone,
                // A new exit: not the one already recorded when asked.
                "next-exit" => gone || (exited && st.finished_at != first.finished_at),
                // As dockerd: a container between two runs of its restart
                // policy is not running, and an exit since the call ends
                // the wait even when the restart came too soon to be seen.
                _ => {
                    gone || st.status != crate::container::state::Status::Running
                        || st.finished_at != first.finished_at
                }
            };
            if done {
                // Removed, or being removed (its state may be gone
                // already): its monitor left the exit code beside it
                // before the removal began.
                let left = std::fs::read_to_string(container::exit_file(&c.dir)).ok();
                if gone {
                    let _ = std::fs::remove_file(container::exit_file(&c.dir));
                }
                break match left.and_then(|t| t.trim().parse().ok()) {
                    Some(code) => code,
                    None => st.exit_code.unwrap_or(0),
                };
            }
            if tx.is_closed() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let body = serde_json::json!({ "StatusCode": code, "Error": null }).to_string() + "\n";
        let _ = tx.blocking_send(Ok(body.into_bytes()));
    });
    Ok((
        [("content-type", "application/json")],
        Body::from_stream(tokio_stream(rx)),
    )
        .into_response())
}

/// Docker's multiplexed stream frame: the stream (1 stdout, 2 stderr),
/// three zero bytes, the payload's length (big-endian), the payload.
fn frame(stream: logs::Stream, text: &[u8]) -> Vec<u8> {
    let kind = match stream {
        logs::Stream::Stdout => 1u8,
        logs::Stream::Stderr => 2u8,
    };
    let mut out = vec![kind, 0, 0, 0];
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text);
    out
}

async fn logs_of(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let c = blocking({
        let state = state.clone();
        move || find(&state, &id)
    })
    .await?;
    if c.record.log_driver == "none" {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            container::LOGS_NOT_READABLE,
        ));
    }
    let (out, err) = (flag(q.get("stdout")), flag(q.get("stderr")));
    let tty = c.record.spec.tty;
    let timestamps = flag(q.get("timestamps"));
    let tail: Option<usize> = q.get("tail").and_then(|t| t.parse().ok());
    let follow = flag(q.get("follow"));
    // `since` and `until`: UNIX times (seconds, a fraction allowed; 0 is
    // no bound), as docker takes them.
    let bound = |key: &str| -> Result<Option<f64>, ApiError> {
        match q.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<f64>()
                .map(|t| (t > 0.0).then_some(t))
                .map_err(|_| ApiError::bad(format!("invalid {key} {v:?}: a UNIX time"))),
        }
    };
    let (since, until) = (bound("since")?, bound("until")?);
    let render = move |e: &logs::Entry| -> Option<Vec<u8>> {
        let wanted = match e.stream {
            logs::Stream::Stdout => out,
            logs::Stream::Stderr => err,
        };
        if !wanted {
            return None;
        }
        if since.is_some() || until.is_some() {
            let at = chrono::DateTime::parse_from_rfc3339(&e.time)
                .map(|t| t.timestamp_nanos_opt().unwrap_or(0) as f64 / 1e9)
                .unwrap_or(0.0);
            if since.is_some_and(|s| at < s) || until.is_some_and(|u| at >= u) {
                return None;
            }
        }
        let mut text = Vec::new();
        if timestamps {
            text.extend_from_slice(e.time.as_bytes());
            text.push(b' ');
        }
        text.extend_from_slice(&e.text);
        Some(match tty {
            true => text,
            false => frame(e.stream, &text),
        })
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    tokio::task::spawn_blocking(move || {
        let send = |entries: &[logs::Entry]| {
            entries
                .iter()
                .filter_map(&render)
                .all(|b| tx.blocking_send(Ok(b)).is_ok())
        };
        if !follow {
            let entries = logs::read(&c.dir);
            let skip = tail.map_or(0, |t| entries.len().saturating_sub(t));
            send(&entries[skip..]);
            return;
        }
        // Followed through one open handle: what is read and what comes
        // after meet at the same offset, nothing written between skipped.
        let mut handle = logs::Tail::open(&c.dir);
        let mut first = true;
        loop {
            if handle.is_none() {
                handle = logs::Tail::open(&c.dir);
            }
            let running = c.state().is_running();
            let mut more = handle.as_mut().map(logs::Tail::more).unwrap_or_default();
            if first {
                first = false;
                let skip = tail.map_or(0, |t| more.len().saturating_sub(t));
                more.drain(..skip);
            }
            if !send(&more) || (more.is_empty() && !running) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    let body = Body::from_stream(tokio_stream(rx));
    let kind = match tty {
        true => "application/vnd.docker.raw-stream",
        false => "application/vnd.docker.multiplexed-stream",
    };
    Ok(([("content-type", kind)], body).into_response())
}

/// What a hijacked connection's client sends: bytes, then None at its
/// end (a half-close: `docker run -i`'s input ran out).
type Input = tokio::sync::mpsc::Receiver<Option<Vec<u8>>>;

/// `POST /containers/ID/attach?stream=1&stdout=1&stderr=1[&stdin=1]`: the
/// connection is taken over (101, `Upgrade: tcp`) and carries the
/// container's output, multiplexed unless it has a tty, until its next exit
/// (`docker run` attaches before it starts the container); with `stdin`,
/// what the client sends goes to the container's input through its
/// monitor, until the client's detach keys.
async fn attach(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
    mut req: axum::http::Request<Body>,
) -> Result<Response, ApiError> {
    let c = blocking({
        let state = state.clone();
        move || find(&state, &id)
    })
    .await?;
    let tty = c.record.spec.tty;
    let (out, err) = (flag(q.get("stdout")), flag(q.get("stderr")));
    let past = flag(q.get("logs"));
    // `stream=0`: what was logged, then the end (docker's attach without
    // a stream), not what comes after.
    let live = flag(q.get("stream"));
    let with_input = flag(q.get("stdin")) && c.record.open_stdin;
    // Keys are looked for on a terminal's input only, as docker's: piped
    // bytes pass as they are.
    let keys = match tty {
        true => container::attach::detach_keys(
            q.get("detachKeys")
                .map(String::as_str)
                .filter(|k| !k.is_empty()),
        )
        .map_err(ApiError::bad)?,
        false => Vec::new(),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    // Set when the output ends (the input has nowhere to go) or when the
    // client types its detach keys (the output stops).
    let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let input = with_input.then(|| {
        let (in_tx, in_rx) = tokio::sync::mpsc::channel(64);
        let (dir, over) = (c.dir.clone(), over.clone());
        tokio::task::spawn_blocking(move || feed(&dir, in_rx, &over, keys));
        in_tx
    });
    tokio::task::spawn_blocking(move || {
        let stop = || !live || over.load(std::sync::atomic::Ordering::SeqCst) || tx.is_closed();
        container::attach::follow_run(&c, past, &stop, |e| {
            let wanted = match e.stream {
                logs::Stream::Stdout => out,
                logs::Stream::Stderr => err,
            };
            let bytes = match tty {
                true => e.text.clone(),
                false => frame(e.stream, &e.text),
            };
            let sent = !wanted || tx.blocking_send(bytes).is_ok();
            sent && !tx.is_closed()
        });
        // The output is over: the input has nowhere to go.
        over.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let kind = match tty {
        true => "application/vnd.docker.raw-stream",
        false => "application/vnd.docker.multiplexed-stream",
    };
    Ok(hijack(upgrade, rx, kind, input))
}

/// Passes an attached client's input to the container's monitor (once it
/// listens: the client attaches before the start), until the client's
/// input ends (said to the monitor, which closes the container's with
/// `StdinOnce`), its detach keys (`over` is set), or the output's end.
fn feed(
    dir: &std::path::Path,
    mut input: Input,
    over: &std::sync::atomic::AtomicBool,
    keys: Vec<u8>,
) {
    use std::sync::atomic::Ordering;
    let mut escape = container::attach::Escape::new(keys);
    let mut monitor: Option<container::attach::Attached> = None;
    while let Some(message) = input.blocking_recv() {
        while monitor.is_none() {
            match container::attach::Attached::connect(dir) {
                Ok(m) => monitor = Some(m),
                Err(_) if over.load(Ordering::SeqCst) => return,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
        let Some(m) = monitor.as_mut() else { return };
        let Some(bytes) = message else {
            // A held start of the keys that never finished is input too.
            let _ = m.send(&escape.rest());
            let _ = m.close_input();
            return;
        };
        let (pass, detached) = escape.scan(&bytes);
        if m.send(&pass).is_err() || detached {
            over.store(true, Ordering::SeqCst);
            return;
        }
    }
}

/// `POST /containers/ID/resize?h=ROWS&w=COLUMNS`: its tty's new size,
/// through its monitor.
async fn resize(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<StatusCode, ApiError> {
    let (rows, cols) = size_of(&q)?;
    blocking(move || {
        let c = find(&state, &id)?;
        container::attach::Attached::connect(&c.dir)
            .and_then(|mut m| m.resize(rows, cols))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    format!("Container {} is not running", c.record.id),
                )
            })
    })
    .await?;
    Ok(StatusCode::OK)
}

/// The `h` and `w` of a resize.
fn size_of(q: &HashMap<String, String>) -> Result<(u16, u16), ApiError> {
    let get = |k: &str| -> Result<u16, ApiError> {
        q.get(k)
            .map_or(Ok(0), |v| v.parse())
            .map_err(|_| ApiError::bad(format!("invalid {k} {:?}: a number up to 65535", q[k])))
    };
    Ok((get("h")?, get("w")?))
}

/// Takes the connection over (101, `Upgrade: tcp`, as docker's attach and
/// exec answer) and writes what `rx` brings to it until it ends; with
/// `input`, what the client sends is passed there, then None at its end.
fn hijack(
    upgrade: hyper::upgrade::OnUpgrade,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    kind: &'static str,
    input: Option<tokio::sync::mpsc::Sender<Option<Vec<u8>>>>,
) -> Response {
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let (mut reader, mut writer) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
        let reading = input.map(|input| {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 << 10];
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if input.send(Some(buf[..n].to_vec())).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = input.send(None).await;
            })
        });
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
        if let Some(r) = reading {
            r.abort();
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            ("content-type", kind),
            ("connection", "Upgrade"),
            ("upgrade", "tcp"),
        ],
    )
        .into_response()
}

/// An exec made by `POST /containers/ID/exec`, run by `/exec/ID/start`.
#[derive(Debug, Clone)]
pub(crate) struct ExecInstance {
    container: String,
    opts: container::Exec,
    running: bool,
    exit: Option<i32>,
    /// When it ended: ended ones are forgotten after a while, so a
    /// long-lived service does not keep every exec it ever ran.
    ended: Option<std::time::Instant>,
    /// Its tty while it runs, for `/exec/ID/resize`.
    tty: Arc<std::sync::Mutex<ExecTty>>,
    /// The keys that detach a client from it (`ctrl-p,ctrl-q`).
    detach_keys: Vec<u8>,
}

/// A running exec's tty: its master once it exists, and the last size a
/// client asked for (given to the master when it comes: clients resize
/// as soon as they started the exec).
#[derive(Debug, Default)]
struct ExecTty {
    master: Option<std::os::fd::OwnedFd>,
    size: Option<(u16, u16)>,
}

/// How long an ended exec stays inspectable.
const EXEC_KEPT: std::time::Duration = std::time::Duration::from_secs(300);

async fn exec_create(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let c = blocking({
        let state = state.clone();
        move || find(&state, &id)
    })
    .await?;
    if !c.state().is_running() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Container {} is not running", c.record.id),
        ));
    }
    let argv = strings(&body["Cmd"]);
    if argv.is_empty() {
        return Err(ApiError::bad("No exec command specified"));
    }
    // dockerd reads JSON keys in any case: docker-py sends `detachKeys`.
    let keys = text(&body["DetachKeys"]).or_else(|| text(&body["detachKeys"]));
    let detach_keys = container::attach::detach_keys(keys.as_deref()).map_err(ApiError::bad)?;
    let exec_id = format!(
        "{:x}",
        sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            format!(
                "{}{:?}{:?}",
                c.record.id,
                argv,
                std::time::SystemTime::now()
            ),
        ))
    );
    let instance = ExecInstance {
        container: c.record.id.clone(),
        opts: container::Exec {
            argv,
            env: strings(&body["Env"]),
            user: text(&body["User"]),
            workdir: text(&body["WorkingDir"]),
            tty: body["Tty"].as_bool() == Some(true),
            interactive: body["AttachStdin"].as_bool() == Some(true),
        },
        running: false,
        exit: None,
        ended: None,
        tty: Arc::default(),
        detach_keys,
    };
    let mut execs = state
        .execs
        .lock()
        .map_err(|_| ApiError::internal("exec table"))?;
    execs.retain(|_, e| e.ended.is_none_or(|t| t.elapsed() < EXEC_KEPT));
    execs.insert(exec_id.clone(), instance);
    drop(execs);
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "Id": exec_id })),
    ))
}

/// Runs an exec; its output over the connection taken over (multiplexed
/// unless it has a tty), its input from it with `AttachStdin` (or,
/// detached, neither), its exit code kept for `/exec/ID/json`.
async fn exec_start(
    State(state): State<Shared>,
    Path(id): Path<String>,
    mut req: axum::http::Request<Body>,
) -> Result<Response, ApiError> {
    let instance = {
        let mut execs = state
            .execs
            .lock()
            .map_err(|_| ApiError::internal("exec table"))?;
        let e = execs
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
        if e.running || e.exit.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("exec {id} has already run"),
            ));
        }
        e.running = true;
        e.clone()
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let start = serde_json::from_slice::<Value>(&body).unwrap_or_default();
    let detach = start["Detach"].as_bool().unwrap_or(false);
    // As dockerd: the start's `Tty` decides the framing of what the
    // client reads (docker-py starts a tty exec with `Tty: false` and
    // reads frames), the exec's own `Tty` whether it gets a terminal.
    let raw = start["Tty"].as_bool().unwrap_or(instance.opts.tty);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let (in_tx, in_rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(64);
    let interactive = instance.opts.interactive && !detach;
    let run_state = state.clone();
    // Told when the client types its detach keys: its connection ends,
    // the exec runs on (what it prints then is read and dropped).
    let detached = Arc::new(tokio::sync::Notify::new());
    // As dockerd: the keys are looked for on a tty only; piped bytes pass.
    let keys = match instance.opts.tty {
        true => instance.detach_keys.clone(),
        false => Vec::new(),
    };
    let input = interactive.then(|| (in_rx, keys, detached.clone()));
    tokio::task::spawn_blocking(move || {
        let code = run_exec(&run_state, &instance, &tx, input, raw);
        if let Ok(mut execs) = run_state.execs.lock()
            && let Some(e) = execs.get_mut(&id)
        {
            e.running = false;
            e.exit = Some(code.unwrap_or(126));
            e.ended = Some(std::time::Instant::now());
        }
        // The output ends only now: a client reads the exit code as soon
        // as it ends (`docker exec`'s own exit code).
        drop(tx);
    });
    if detach {
        return Ok(StatusCode::OK.into_response());
    }
    let kind = match raw {
        true => "application/vnd.docker.raw-stream",
        false => "application/vnd.docker.multiplexed-stream",
    };
    let (client_tx, client_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                next = rx.recv() => {
                    let Some(bytes) = next else { return };
                    if client_tx.send(bytes).await.is_err() {
                        return;
                    }
                }
                () = detached.notified() => return,
            }
        }
    });
    Ok(hijack(
        upgrade,
        client_rx,
        kind,
        interactive.then_some(in_tx),
    ))
}

/// An exec's input: the client's bytes, its detach keys, and whom to tell
/// when they are typed.
type ExecInput = (Input, Vec<u8>, Arc<tokio::sync::Notify>);

/// Writes a client's input to `to` until it ends (then `to` is closed) or
/// the client types its detach keys.
fn copy_input((mut input, keys, detached): ExecInput, mut to: std::fs::File) {
    use std::io::Write;
    let mut escape = container::attach::Escape::new(keys);
    while let Some(message) = input.blocking_recv() {
        let Some(bytes) = message else {
            // A held start of the keys that never finished is input too.
            let _ = to.write_all(&escape.rest());
            return;
        };
        let (pass, over) = escape.scan(&bytes);
        if to.write_all(&pass).is_err() {
            return;
        }
        if over {
            detached.notify_one();
            return;
        }
    }
}

/// Copies `from` to the client through `tx` (each chunk made by `wrap`)
/// until its end; once the client is gone the rest is read and dropped,
/// so the exec never meets a closed pipe (SIGPIPE) or a full pty.
fn drain(
    mut from: impl std::io::Read,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    wrap: impl Fn(&[u8]) -> Vec<u8>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut tx = Some(tx);
    // A pty's master reads EIO once every slave is closed: the end.
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            return;
        }
        if let Some(t) = &tx
            && t.blocking_send(wrap(&buf[..n])).is_err()
        {
            tx = None;
        }
    }
}

/// Runs an exec to its end: its output sent to `tx` (a tty's as it is
/// when `raw`, else framed as stdout), `input` to its stdin or tty; its
/// exit code.
fn run_exec(
    state: &Shared,
    instance: &ExecInstance,
    tx: &tokio::sync::mpsc::Sender<Vec<u8>>,
    input: Option<ExecInput>,
    raw: bool,
) -> Option<i32> {
    let c = container::find(&state.store, &instance.container).ok()?;
    let (out_r, out_w) = std::io::pipe().ok()?;
    let (err_r, err_w) = std::io::pipe().ok()?;
    let pumps =
        [(out_r, logs::Stream::Stdout), (err_r, logs::Stream::Stderr)].map(|(r, stream)| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                drain(r, tx, |b| match raw {
                    true => b.to_vec(),
                    false => frame(stream, b),
                })
            })
        });
    let mut io = crate::sandbox::Io {
        output: Some(out_w.into()),
        stderr: Some(err_w.into()),
        ..Default::default()
    };
    let mut feeder = None;
    // With a tty, its master carries both ways: read here to the client
    // (raw), written from the client's input.
    let tty_reader = Arc::new(std::sync::Mutex::new(None));
    if instance.opts.tty {
        let (slot, tx, tty) = (tty_reader.clone(), tx.clone(), instance.tty.clone());
        let mut input = input;
        io.console = Some(crate::sandbox::Console(Box::new(move |master| {
            if let Ok(mut t) = tty.lock() {
                if let Some((rows, cols)) = t.size {
                    let _ =
                        crate::sandbox::tty::resize(std::os::fd::AsFd::as_fd(&master), rows, cols);
                }
                t.master = master.try_clone().ok();
            }
            if let (Some(input), Ok(to)) = (input.take(), master.try_clone()) {
                std::thread::spawn(move || copy_input(input, to.into()));
            }
            let from = std::fs::File::from(master);
            let reader = std::thread::spawn(move || {
                drain(from, tx, |b| match raw {
                    true => b.to_vec(),
                    false => frame(logs::Stream::Stdout, b),
                })
            });
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(reader);
        })));
    } else if let Some(input) = input {
        let (r, w) = std::io::pipe().ok()?;
        io.stdin = crate::sandbox::Stdin::Fd(r.into());
        feeder = Some(std::thread::spawn(move || {
            copy_input(input, std::fs::File::from(std::os::fd::OwnedFd::from(w)))
        }));
    }
    let result = c.exec_with(&instance.opts, io);
    if let Ok(mut t) = instance.tty.lock() {
        t.master = None;
    }
    let reader = tty_reader.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(r) = reader {
        let _ = r.join();
    }
    for p in pumps {
        let _ = p.join();
    }
    // The feeder ends with the client's input (its writes fail once the
    // exec is gone), which may outlive the exec: not waited for.
    drop(feeder);
    Some(match result {
        Ok(code) => code,
        // Said on its stderr, as docker says an exec's failure.
        Err(e) => {
            let _ = tx.blocking_send(frame(logs::Stream::Stderr, format!("{e}\n").as_bytes()));
            e.exit_code()
        }
    })
}

/// `POST /exec/ID/resize?h=ROWS&w=COLUMNS`: a running exec's tty's size.
async fn exec_resize(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<StatusCode, ApiError> {
    let (rows, cols) = size_of(&q)?;
    let execs = state
        .execs
        .lock()
        .map_err(|_| ApiError::internal("exec table"))?;
    let e = execs
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
    if !e.opts.tty || e.exit.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("exec {id} is not running with a tty"),
        ));
    }
    let mut tty = e.tty.lock().map_err(|_| ApiError::internal("exec tty"))?;
    tty.size = Some((rows, cols));
    match tty.master.as_ref() {
        Some(m) => crate::sandbox::tty::resize(std::os::fd::AsFd::as_fd(m), rows, cols)
            .map(|()| StatusCode::OK)
            .map_err(|e| ApiError::internal(format!("resizing the exec's tty: {e}"))),
        None => Ok(StatusCode::OK),
    }
}

async fn exec_inspect(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let execs = state
        .execs
        .lock()
        .map_err(|_| ApiError::internal("exec table"))?;
    let e = execs
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))?;
    Ok(Json(serde_json::json!({
        "ID": id,
        "Running": e.running,
        "ExitCode": e.exit,
        "ContainerID": e.container,
        "ProcessConfig": { "entrypoint": e.opts.argv.first(), "arguments": e.opts.argv.get(1..).unwrap_or_default(), "tty": e.opts.tty },
        "OpenStdin": e.opts.interactive,
        "OpenStdout": true,
        "OpenStderr": true,
    })))
}

/// `GET /containers/ID/top`: its processes, as `ps -ef` columns.
async fn top(State(state): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let c = find(&state, &id)?;
        let mut procs = c.processes();
        if procs.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("Container {} is not running", c.record.id),
            ));
        }
        // kiln's own init (the container's PID 1, which docker does not
        // have) is not the container's work: docker's top lists that.
        let pid1 = c
            .state()
            .init
            .and_then(|i| crate::sandbox::container::container_pid1(i.pid));
        procs.retain(|p| Some(p.pid) != pid1);
        let hz = crate::sandbox::process::ticks_per_second().max(1);
        let rows: Vec<Vec<String>> = procs
            .into_iter()
            .map(|p| {
                let cpu = p.cpu_ticks / hz;
                vec![
                    match p.uid {
                        0 => "root".to_string(),
                        u => u.to_string(),
                    },
                    p.pid.to_string(),
                    p.ppid.to_string(),
                    "0".into(),
                    "?".into(),
                    format!("{:02}:{:02}:{:02}", cpu / 3600, cpu / 60 % 60, cpu % 60),
                    p.cmd,
                ]
            })
            .collect();
        Ok(Json(serde_json::json!({
            "Titles": ["UID", "PID", "PPID", "C", "TTY", "TIME", "CMD"],
            "Processes": rows,
        })))
    })
    .await
}

/// `GET /containers/ID/stats`: samples of its CPU, memory and processes,
/// one a second, each with the one before as its precpu, until it stops;
/// with `stream=false`, one sample (two readings a second apart, as
/// docker's gives precpu).
async fn stats(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    // Streamed unless told not to (`stream=0`, `false`, docker-py's
    // `False`).
    let streaming = q.get("stream").is_none_or(|v| flag(Some(v))) && !flag(q.get("one-shot"));
    let c = blocking({
        let state = state.clone();
        move || find(&state, &id)
    })
    .await?;
    if !streaming {
        return blocking(move || {
            let first = Sample::take(&c);
            std::thread::sleep(std::time::Duration::from_secs(1));
            Ok(Json(Sample::take(&c).docker_json(&c, &first)).into_response())
        })
        .await;
    }
    // A sample a second, each with the one before as its precpu, until
    // the container stops or the client goes (`docker stats`).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut before = Sample::take(&c);
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            let now = Sample::take(&c);
            let mut line = now.docker_json(&c, &before).to_string().into_bytes();
            line.push(b'\n');
            if tx.blocking_send(Ok(line)).is_err() || !c.state().is_running() {
                return;
            }
            before = now;
        }
    });
    Ok((
        [("content-type", "application/json")],
        Body::from_stream(tokio_stream(rx)),
    )
        .into_response())
}

/// Docker's stats object of a sample.
trait DockerStats {
    /// Docker's stats object: this sample, `before` as its precpu.
    fn docker_json(&self, c: &Container, before: &Sample) -> Value;
}

impl DockerStats for Sample {
    fn docker_json(&self, c: &Container, before: &Sample) -> Value {
        let cpus = container::stats::online_cpus();
        let cpu_stats = |s: &Sample| {
            serde_json::json!({
                "cpu_usage": { "total_usage": s.cpu_ns, "usage_in_kernelmode": 0, "usage_in_usermode": s.cpu_ns },
                "system_cpu_usage": s.system_ns,
                "online_cpus": cpus,
                "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
            })
        };
        serde_json::json!({
            "read": self.at.to_rfc3339(),
            "preread": before.at.to_rfc3339(),
            "id": c.record.id,
            "name": format!("/{}", c.record.name),
            "pids_stats": { "current": self.procs.len() },
            "cpu_stats": cpu_stats(self),
            "precpu_stats": cpu_stats(before),
            "memory_stats": { "usage": self.memory(), "limit": container::stats::memory_limit(c), "stats": {} },
            "blkio_stats": {},
            "networks": {},
        })
    }
}

/// `POST /commit?container=ID&repo=R&tag=T&author=A&comment=C`: an image
/// of the container's changes (`changes` as Dockerfile instructions).
async fn commit(
    State(state): State<Shared>,
    raw: axum::http::Request<Body>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let query = raw.uri().query().unwrap_or_default().to_string();
    let pairs: Vec<(String, String)> = url_pairs(&query);
    let get = |k: &str| first(&pairs, k);
    let changes = every(&pairs, "changes");
    let id = get("container").ok_or_else(|| ApiError::bad("container is required"))?;
    let name = match (get("repo"), get("tag")) {
        (Some(r), Some(t)) => Some(format!("{}:{t}", super::wire::familiar(&r))),
        (Some(r), None) => Some(super::wire::familiar(&r).to_string()),
        _ => None,
    };
    let name = name
        .map(|n| n.parse::<crate::image::Name>().map_err(ApiError::bad))
        .transpose()?;
    let opts = container::Commit {
        name,
        author: get("author"),
        message: get("comment"),
        changes,
        pause: get("pause").is_none_or(|p| p != "0" && p != "false"),
        // The service's environment is no client's.
        epoch: None,
    };
    let gc = state.gc.clone().read_owned().await;
    blocking(move || {
        let _gc = gc;
        let c = find(&state, &id)?;
        let image = c.commit(&state.store, &opts)?;
        Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({ "Id": image.id.to_string() })),
        ))
    })
    .await
}

async fn remove(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let store = &state.store;
        if flag(q.get("link")) {
            return Err(ApiError::bad(format!(
                "{id} is a container, not a link: a link is removed as NAME/ALIAS"
            )));
        }
        let c = find(&state, &id)?;
        if c.state().is_running() && !flag(q.get("force")) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                    c.record.id
                ),
            ));
        }
        match flag(q.get("v")) {
            true => c.remove_with_volumes(store, true, true)?,
            false => c.remove(true)?,
        }
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// `DELETE /containers/NAME/ALIAS?link=1`: a legacy link of NAME's goes,
/// both containers stay.
async fn remove_link(
    State(state): State<Shared>,
    Path((name, alias)): Path<(String, String)>,
    Query(q): Q,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        if !flag(q.get("link")) {
            return Err(ApiError::not_found(format!(
                "No such container: {name}/{alias}"
            )));
        }
        let c = find(&state, &name)?;
        if !c.record.legacy_links.iter().any(|(_, a)| *a == alias) {
            return Err(ApiError::not_found(format!(
                "Could not find container for entity id /{name}/{alias}"
            )));
        }
        c.modify_record(|r| {
            r.legacy_links.retain(|(_, a)| *a != alias);
            Ok(())
        })?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn prune(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let mut deleted = Vec::new();
        let mut reclaimed = 0;
        for c in container::list(&state.store)? {
            if !c.state().is_running() {
                // What its writable layer held is what its removal frees.
                let bytes = crate::store::gc::dir_size(&c.record.spec.upper);
                c.remove(false)?;
                reclaimed += bytes;
                deleted.push(c.record.id);
            }
        }
        Ok(Json(
            serde_json::json!({ "ContainersDeleted": deleted, "SpaceReclaimed": reclaimed }),
        ))
    })
    .await
}
