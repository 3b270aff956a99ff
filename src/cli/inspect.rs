//! `kiln inspect`: an image's config, layers and manifest, or a container's
//! record and state, as JSON in `docker inspect`'s shapes.

use super::{Error, open_store};
use kiln::image::Image;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images or containers: names or ids (an image first, as docker).
    #[arg(required = true)]
    images: Vec<String>,
    /// Only `image` or `container`.
    #[arg(long = "type", value_parser = ["image", "container"])]
    kind: Option<String>,
}

/// Prints a JSON array, one object per image, in `docker inspect`'s shape.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let mut out = Vec::new();
    for reference in &args.images {
        let image = match args.kind.as_deref() {
            Some("container") => None,
            Some(_) => Some(Image::resolve(&store, reference)?),
            None => match Image::resolve(&store, reference) {
                Ok(i) => Some(i),
                Err(e) => match kiln::container::find(&store, reference) {
                    Ok(_) => None,
                    Err(kiln::container::ContainerError::NotFound(_)) => return Err(e.into()),
                    Err(e) => return Err(super::container_error(e)),
                },
            },
        };
        let Some(image) = image else {
            let c = kiln::container::find(&store, reference).map_err(super::container_error)?;
            out.push(container_json(&c));
            continue;
        };
        let c = &image.config;
        out.push(serde_json::json!({
            "Id": image.id.to_string(),
            "RepoTags": image.names(&store)?,
            "Created": c.created,
            "Author": c.author.clone().unwrap_or_default(),
            "Architecture": c.architecture,
            "Os": c.os,
            "Variant": c.variant,
            "Config": c.config,
            "RootFS": { "Type": c.rootfs.kind, "Layers": c.rootfs.diff_ids },
            "History": c.history,
            "Size": image.size(),
            "Manifest": {
                "Digest": image.manifest_digest.to_string(),
                "Layers": image.manifest.layers(),
            },
        }));
    }
    let text = serde_json::to_string_pretty(&out).map_err(std::io::Error::other)? + "\n";
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// A container in `docker inspect`'s shape.
fn container_json(c: &kiln::container::Container) -> serde_json::Value {
    let st = c.state();
    let r = &c.record;
    let restart_max = match r.restart {
        kiln::container::Restart::OnFailure(Some(n)) => n,
        _ => 0,
    };
    serde_json::json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.argv.first(),
        "Args": r.argv.get(1..).unwrap_or_default(),
        "State": {
            "Status": st.status.as_str(),
            "Running": st.status == kiln::container::state::Status::Running,
            "Restarting": st.status == kiln::container::state::Status::Restarting,
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
        "LogPath": kiln::container::logs::path(&c.dir),
        "HostConfig": {
            "AutoRemove": r.auto_remove,
            "RestartPolicy": { "Name": r.restart.name(), "MaximumRetryCount": restart_max },
            "NetworkMode": match (r.networks.first(), r.spec.network) {
                (Some(a), _) => a.network.as_str(),
                (None, kiln::sandbox::Network::Host) => "host",
                (None, kiln::sandbox::Network::None) => "none",
            },
            "ReadonlyRootfs": r.spec.read_only,
            "Memory": r.limits.memory.unwrap_or(0),
            "PidsLimit": r.limits.pids,
        },
        "NetworkSettings": {
            "Networks": kiln::container::networks::settings(c)
                .into_iter()
                .map(|(a, net, e)| {
                    let v = serde_json::json!({
                        "Aliases": a.aliases,
                        "NetworkID": net.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
                        "EndpointID": e.as_ref().map(|e| e.host_if.clone()).unwrap_or_default(),
                        "Gateway": net.as_ref().and_then(|n| n.gateway).map(|g| g.to_string()).unwrap_or_default(),
                        "IPAddress": e.as_ref().map(|e| e.ip.to_string()).unwrap_or_default(),
                        "IPPrefixLen": match (&e, &net) { (Some(_), Some(n)) => n.subnet.prefix, _ => 0 },
                        "MacAddress": e.as_ref().map(|e| e.mac.clone()).unwrap_or_default(),
                    });
                    (a.network, v)
                })
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
        },
    })
}
