//! A container as `docker inspect` shows it: one JSON shape for `kiln
//! inspect` and the Docker API.

use super::Container;

/// A container in `docker inspect`'s shape (`kiln inspect`, the Docker API).
pub fn docker_json(c: &Container) -> serde_json::Value {
    let st = c.state();
    let r = &c.record;
    let h = &r.host;
    let nets = crate::container::networks::settings(c);
    // Docker's top-level MacAddress is the first network's.
    let first_mac = nets
        .first()
        .and_then(|(_, _, e)| e.as_ref().map(|e| e.mac.clone()))
        .unwrap_or_default();
    let restart_max = match r.restart {
        crate::container::Restart::OnFailure(Some(n)) => n,
        _ => 0,
    };
    serde_json::json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.argv.first(),
        "Args": r.argv.get(1..).unwrap_or_default(),
        "State": {
            "Status": st.docker_state(),
            "Running": st.status == crate::container::state::Status::Running,
            "Paused": st.paused && st.status == crate::container::state::Status::Running,
            "Restarting": st.status == crate::container::state::Status::Restarting,
            "Dead": false,
            "Pid": st.init.map_or(0, |p| p.pid),
            "ExitCode": st.exit_code.unwrap_or(0),
            "Error": st.error.clone().unwrap_or_default(),
            "StartedAt": st.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": st.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "Health": st.health.as_ref().map(|h| serde_json::json!({
                "Status": h.status,
                "FailingStreak": h.failing_streak,
                "Log": h.log.iter().map(|p| serde_json::json!({
                    "Start": p.start, "End": p.end, "ExitCode": p.exit_code, "Output": p.output,
                })).collect::<Vec<_>>(),
            })),
        },
        "Image": r.image_id,
        "Name": format!("/{}", r.name),
        "RestartCount": st.restart_count,
        "LogPath": crate::container::logs::path(&c.dir),
        "HostConfig": {
            "AutoRemove": r.auto_remove,
            // The log is kiln's k8s-file; clients (docker-py's run) read
            // a container's logs through the API only for drivers they
            // know keep them, json-file among them, which is what this
            // one does for them.
            "LogConfig": {
                "Type": if r.log_driver.is_empty() { "json-file" } else { r.log_driver.as_str() },
                "Config": r.log_opts,
            },
            "PortBindings": port_map(r),
            "RestartPolicy": { "Name": r.restart.name(), "MaximumRetryCount": restart_max },
            "NetworkMode": network_mode(r),
            "Links": (!r.legacy_links.is_empty()).then(|| {
                r.legacy_links.iter().map(|(id, alias)| {
                    let target = super::load(&c.dir.with_file_name(id)).map_or(id.clone(), |t| t.record.name);
                    format!("/{target}:/{}/{alias}", r.name)
                }).collect::<Vec<_>>()
            }),
            "ReadonlyRootfs": r.spec.read_only,
            "Memory": r.limits.memory.unwrap_or(0),
            "MemorySwap": r.limits.memory_swap.unwrap_or(0),
            "NanoCpus": r.limits.cpus.map_or(0, |c| (c * 1e9) as u64),
            "CpuShares": r.limits.cpu_shares.unwrap_or(0),
            "CpusetCpus": r.limits.cpuset_cpus.clone().unwrap_or_default(),
            "PidsLimit": r.limits.pids,
            "Tmpfs": (!r.tmpfs_opts.is_empty()).then_some(&r.tmpfs_opts),
            "GroupAdd": (!r.spec.extra_groups.is_empty()).then_some(&r.spec.extra_groups),
            "Sysctls": (!r.spec.sysctls.is_empty()).then(|| {
                r.spec.sysctls.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()
            }),
            "VolumesFrom": (!r.volumes_from.is_empty()).then_some(&r.volumes_from),
            "Ulimits": (!r.spec.rlimits.is_empty()).then(|| {
                r.spec.rlimits.iter().map(|l| serde_json::json!({
                    "Name": l.name,
                    "Soft": if l.soft == u64::MAX { -1 } else { l.soft as i64 },
                    "Hard": if l.hard == u64::MAX { -1 } else { l.hard as i64 },
                })).collect::<Vec<_>>()
            }),
            "Runtime": if h.runtime.is_empty() { "runc" } else { h.runtime.as_str() },
            "Isolation": h.isolation,
            "Init": h.init,
            "UTSMode": h.uts_mode,
            "PidMode": h.pid_mode,
            "IpcMode": if h.ipc_mode.is_empty() { "private" } else { h.ipc_mode.as_str() },
            "CgroupnsMode": match h.cgroupns_mode.as_str() {
                "" if crate::sandbox::cgroup::unified() => "private",
                "" => "host",
                m => m,
            },
            "VolumeDriver": h.volume_driver,
            "DeviceCgroupRules": (!h.device_cgroup_rules.is_empty()).then_some(&h.device_cgroup_rules),
            "MemorySwappiness": h.memory_swappiness,
        },
        "Mounts": r.spec.binds.iter().map(|b| match volume_name(c, &b.source) {
            Some(name) => serde_json::json!({
                "Type": "volume", "Name": name, "Source": b.source, "Destination": b.target,
                "Driver": "local", "Mode": if b.read_only { "ro" } else { "z" }, "RW": !b.read_only,
                "Propagation": "",
            }),
            None => serde_json::json!({
                "Type": "bind", "Source": b.source, "Destination": b.target,
                "RW": !b.read_only, "Mode": if b.read_only { "ro" } else { "" }, "Propagation": "rprivate",
            }),
        }).collect::<Vec<_>>(),
        "NetworkSettings": {
            "Ports": port_map(r),
            "MacAddress": first_mac,
            "Networks": r.default_bridge.iter().map(|b| ("bridge".to_string(), endpoint_json(b, None, None)))
                .chain(nets.iter().map(|(a, net, e)| (a.network.clone(), endpoint_json(a, net.as_ref(), e.as_ref()))))
                .collect::<serde_json::Map<_, _>>(),
        },
        "Config": {
            "Hostname": r.spec.hostname,
            "User": r.spec.user,
            "Env": r.spec.env,
            "Cmd": r.argv,
            "Image": r.image,
            "WorkingDir": r.spec.cwd,
            "Labels": r.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "StopSignal": r.stop_signal,
            "StopTimeout": r.stop_timeout,
            "Tty": r.spec.tty,
            "OpenStdin": r.open_stdin,
            "StdinOnce": r.stdin_once,
            "Healthcheck": r.healthcheck_config,
            "MacAddress": h.mac_address,
        },
    })
}

/// HostConfig.NetworkMode: the mode as given, or the first user network.
pub fn network_mode(r: &super::Record) -> String {
    match (&r.default_bridge, r.networks.first(), r.spec.network) {
        (Some(b), _, _) => b.network.clone(),
        (None, Some(a), _) => a.network.clone(),
        (None, None, crate::sandbox::Network::Host) => "host".into(),
        (None, None, crate::sandbox::Network::None) => "none".into(),
    }
}

/// One network's entry of NetworkSettings.Networks: what was asked
/// (IPAMConfig, Links, DriverOpts) and, while it runs, its endpoint.
fn endpoint_json(
    a: &crate::network::Attachment,
    net: Option<&crate::network::Network>,
    e: Option<&crate::network::Endpoint>,
) -> serde_json::Value {
    let asked = a.ip.is_some() || a.ip6.is_some() || !a.link_local_ips.is_empty();
    let ip6 = e.and_then(|e| e.ip6).zip(net.and_then(|n| n.subnet6));
    serde_json::json!({
        "IPAMConfig": asked.then(|| serde_json::json!({
            "IPv4Address": a.ip.map(|i| i.to_string()).unwrap_or_default(),
            "IPv6Address": a.ip6.map(|i| i.to_string()).unwrap_or_default(),
            "LinkLocalIPs": (!a.link_local_ips.is_empty()).then_some(&a.link_local_ips),
        })),
        "Links": (!a.links.is_empty()).then_some(&a.links),
        "Aliases": (!a.aliases.is_empty()).then_some(&a.aliases),
        "NetworkID": net.map(|n| n.id.clone()).unwrap_or_default(),
        "EndpointID": e.map(|e| e.host_if.clone()).unwrap_or_default(),
        "Gateway": net.and_then(|n| n.gateway).filter(|_| e.is_some()).map(|g| g.to_string()).unwrap_or_default(),
        "IPAddress": e.map(|e| e.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": match (e, net) { (Some(_), Some(n)) => n.subnet.prefix, _ => 0 },
        "IPv6Gateway": ip6.and(net.and_then(|n| n.gateway6)).map(|g| g.to_string()).unwrap_or_default(),
        "GlobalIPv6Address": ip6.map(|(ip, _)| ip.to_string()).unwrap_or_default(),
        "GlobalIPv6PrefixLen": ip6.map_or(0, |(_, s6)| s6.prefix),
        "MacAddress": e.map(|e| e.mac.clone()).unwrap_or_default(),
        "DriverOpts": (!a.driver_opts.is_empty()).then(|| {
            a.driver_opts.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()
        }),
    })
}

/// The volume a bind's source is (`STORE/volumes/NAME/_data`), by name.
fn volume_name(c: &Container, source: &std::path::Path) -> Option<String> {
    let store = c.dir.parent()?.parent()?;
    let home = source.strip_prefix(store.join("volumes")).ok()?;
    let mut parts = home.components();
    let name = parts.next()?.as_os_str().to_str()?.to_string();
    (parts.next()?.as_os_str() == "_data" && parts.next().is_none()).then_some(name)
}

/// Published ports as docker maps them: `{"80/tcp": [{"HostIp", "HostPort"}]}`.
fn port_map(r: &super::Record) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for p in &r.ports {
        let key = format!("{}/{}", p.port, p.proto.as_str());
        let entry = serde_json::json!({ "HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string() });
        match map.get_mut(&key).and_then(|v| v.as_array_mut()) {
            Some(list) => list.push(entry),
            None => {
                map.insert(key, serde_json::Value::Array(vec![entry]));
            }
        }
    }
    serde_json::Value::Object(map)
}
