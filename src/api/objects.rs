//! `/volumes/...` and `/networks/...`.

use super::{ApiError, Shared, blocking};
use crate::container::volume;
use crate::network;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::Value;
use std::collections::HashMap;

pub(super) fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/volumes", get(volumes))
        .route("/volumes/create", post(volume_create))
        .route("/volumes/prune", post(volume_prune))
        .route("/volumes/{name}", get(volume_get).delete(volume_remove))
        .route("/networks", get(networks))
        .route("/networks/create", post(network_create))
        .route("/networks/prune", post(network_prune))
        .route("/networks/{id}", get(network_get).delete(network_remove))
        .route("/networks/{id}/connect", post(network_connect))
        .route("/networks/{id}/disconnect", post(network_disconnect))
}

pub(super) fn volume_json(v: &volume::Volume) -> Value {
    serde_json::json!({
        "Name": v.name, "Driver": v.driver, "Mountpoint": v.mountpoint,
        "CreatedAt": v.created, "Scope": "local", "Labels": v.labels, "Options": {},
    })
}

/// Docker's list filters on an object's JSON: `name` (a part of it),
/// `id` (a prefix), `driver`, `label` (`KEY` or `KEY=VALUE`), `type`
/// (`builtin` or `custom` networks); every key must match one of its
/// values.
fn listed(v: &Value, filters: &std::collections::BTreeMap<String, Vec<String>>) -> bool {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    filters.iter().all(|(key, values)| {
        values.iter().any(|want| match key.as_str() {
            "name" => s("Name").contains(want.as_str()),
            "id" => s("Id").starts_with(want.as_str()),
            "driver" => s("Driver") == *want,
            "label" => match want.split_once('=') {
                Some((k, val)) => v["Labels"][k].as_str() == Some(val),
                None => v["Labels"].get(want).is_some(),
            },
            "type" => {
                let builtin = ["host", "none", "bridge"].contains(&s("Name").as_str());
                (want == "builtin") == builtin
            }
            _ => false,
        })
    })
}

async fn volumes(
    State(state): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let mut filters = super::filters_of(&q, &["name", "driver", "label", "dangling"])?;
    let dangling = filters
        .remove("dangling")
        .map(|v| v.iter().any(|x| x == "true" || x == "1"));
    blocking(move || {
        let all: Vec<Value> = volume::list(&state.store)
            .iter()
            .filter(|v| dangling.is_none_or(|d| volume::users(&state.store, v).is_empty() == d))
            .map(volume_json)
            .filter(|v| listed(v, &filters))
            .collect();
        Ok(Json(serde_json::json!({ "Volumes": all, "Warnings": [] })))
    })
    .await
}

async fn volume_create(
    State(state): State<Shared>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    blocking(move || {
        let name = body["Name"].as_str().filter(|n| !n.is_empty());
        // Only the local driver is there: another is a missing plugin.
        if let Some(driver) = body["Driver"]
            .as_str()
            .filter(|d| !d.is_empty() && *d != "local")
        {
            return Err(ApiError::not_found(format!(
                "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        let labels = match &body["Labels"] {
            Value::Null => Default::default(),
            l => serde_json::from_value(l.clone())
                .map_err(|_| ApiError::bad("Labels: a map of strings"))?,
        };
        let (v, _) = volume::create_labelled(&state.store, name, labels)?;
        Ok((StatusCode::CREATED, Json(volume_json(&v))))
    })
    .await
}

async fn volume_get(
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let v = volume::get(&state.store, &name)
            .ok_or_else(|| ApiError::not_found(format!("get {name}: no such volume")))?;
        Ok(Json(volume_json(&v)))
    })
    .await
}

async fn volume_remove(
    State(state): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        if volume::get(&state.store, &name).is_none() {
            return Err(ApiError::not_found(format!("get {name}: no such volume")));
        }
        volume::remove(&state.store, &name, super::flag(q.get("force")))
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn volume_prune(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        // API 1.41's (docker 20.10's) prune: every unused volume, named
        // ones too (only 1.42 keeps them without `all`).
        let gone = volume::prune(&state.store, true);
        Ok(Json(
            serde_json::json!({ "VolumesDeleted": gone, "SpaceReclaimed": 0 }),
        ))
    })
    .await
}

/// The modes docker lists as networks, as kiln has them.
fn modes() -> Vec<Value> {
    [("host", "host"), ("none", "null")]
        .iter()
        .map(|(name, driver)| {
            serde_json::json!({
                "Name": name, "Id": name, "Driver": driver, "Scope": "local",
                "Internal": false, "IPAM": { "Driver": "default", "Config": [] },
                "Containers": {}, "Options": {}, "Labels": {},
            })
        })
        .collect()
}

async fn networks(
    State(state): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let filters = super::filters_of(&q, &["name", "id", "driver", "label", "type"])?;
    blocking(move || {
        let root = state.store.root();
        let mut all = modes();
        all.extend(network::list(root)?.iter().map(|n| n.docker_json(root)));
        all.retain(|v| listed(v, &filters));
        Ok(Json(Value::Array(all)))
    })
    .await
}

async fn network_get(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let root = state.store.root();
        if let Some(m) = modes().into_iter().find(|m| m["Name"] == id.as_str()) {
            return Ok(Json(m));
        }
        Ok(Json(network::find(root, &id)?.docker_json(root)))
    })
    .await
}

async fn network_create(
    State(state): State<Shared>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    blocking(move || {
        let driver = body["Driver"].as_str().unwrap_or("bridge");
        if !driver.is_empty() && driver != "bridge" {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("kiln's networks are bridges: driver {driver:?} is not supported"),
            ));
        }
        let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
        // One IPv4 pool and one IPv6 pool at most, told apart by address.
        let pools: Vec<&Value> = body["IPAM"]["Config"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let (v6, v4): (Vec<&Value>, Vec<&Value>) = pools
            .into_iter()
            .partition(|c| c["Subnet"].as_str().is_some_and(|s| s.contains(':')));
        if v4.len() > 1 || v6.len() > 1 {
            return Err(ApiError::bad(
                "kiln's networks take one IPv4 and one IPv6 pool (IPAM.Config)",
            ));
        }
        let (config, config6) = (
            v4.first().copied().unwrap_or(&Value::Null),
            v6.first().copied().unwrap_or(&Value::Null),
        );
        let ipam_driver = body["IPAM"]["Driver"].as_str().unwrap_or("default");
        if !ipam_driver.is_empty() && ipam_driver != "default" {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("kiln's networks use the default IPAM driver, not {ipam_driver:?}"),
            ));
        }
        let nat = body["Options"]["com.docker.network.bridge.enable_ip_masquerade"].as_str()
            == Some("true");
        let n = network::create(
            state.store.root(),
            &network::Create {
                name: body["Name"].as_str().unwrap_or_default().to_string(),
                subnet: text(&config["Subnet"]),
                gateway: text(&config["Gateway"]),
                ip_range: text(&config["IPRange"]),
                aux: super::wire::string_pairs(&config["AuxiliaryAddresses"]),
                internal: body["Internal"].as_bool() == Some(true),
                nat,
                labels: super::wire::string_pairs(&body["Labels"]),
                enable_ipv6: body["EnableIPv6"].as_bool() == Some(true),
                subnet6: text(&config6["Subnet"]),
                gateway6: text(&config6["Gateway"]),
                ip_range6: text(&config6["IPRange"]),
            },
        )?;
        Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({ "Id": n.id, "Warning": "" })),
        ))
    })
    .await
}

async fn network_remove(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let root = state.store.root();
        network::remove(root, &network::find(root, &id)?)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn network_prune(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let gone = network::prune(state.store.root())?;
        Ok(Json(serde_json::json!({ "NetworksDeleted": gone })))
    })
    .await
}

async fn network_connect(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let cid = body["Container"].as_str().unwrap_or_default();
        let mut c = crate::container::find(&state.store, cid)?;
        let a = super::containers::attachment(&id, &body["EndpointConfig"])?;
        crate::container::networks::connect(&mut c, a)?;
        Ok(StatusCode::OK)
    })
    .await
}

async fn network_disconnect(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let cid = body["Container"].as_str().unwrap_or_default();
        let mut c = crate::container::find(&state.store, cid)?;
        crate::container::networks::disconnect(&mut c, &id)?;
        Ok(StatusCode::OK)
    })
    .await
}
