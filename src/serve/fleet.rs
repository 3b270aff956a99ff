//! The fleet's step cache (`[cache] repo`) kept within its bounds: each
//! job's steps are recorded as used when the job ends (hit or written),
//! steps other builders wrote as used when first seen; after a job, steps
//! unused for `keep_days` go, then the least recently used until the
//! layers fit `max_size`. A step deleted under a reader is a miss for it,
//! never a broken build (the lookup pulls its layer or finds nothing).

use super::config::FleetCache;
use super::{JobError, Service};
use crate::builder::BuildReport;
use crate::registry::{self, Client, Reference};

/// What a trim did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Steps the repository holds after it.
    pub steps: usize,
    /// Their layers' bytes.
    pub bytes: u64,
    /// Steps deleted.
    pub deleted: usize,
}

/// The step tag of `key` (as `builder::cache` names it).
fn tag(key: &str) -> String {
    format!("k-{key}")
}

impl Service {
    /// Records the steps of a job's build as used now.
    pub(super) fn fleet_used(&self, report: &BuildReport) -> Result<(), JobError> {
        let steps: Vec<(String, i64)> = report
            .steps
            .iter()
            .filter_map(|s| Some((tag(s.key.as_deref()?), i64::try_from(s.bytes).ok()?)))
            .collect();
        Ok(self.db().fleet_note(&steps, true)?)
    }

    /// Brings the fleet's step cache within its bounds; None without
    /// bounds.
    pub(super) fn fleet_trim(&self, cache: &FleetCache) -> Result<Option<Trimmed>, JobError> {
        let max = match &cache.max_size {
            Some(s) => Some(crate::units::human_size(s).map_err(JobError::MaxSize)?),
            None => None,
        };
        let oldest = cache.keep_days.map(|d| {
            (chrono::Utc::now() - chrono::Duration::days(i64::try_from(d).unwrap_or(i64::MAX)))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        });
        if max.is_none() && oldest.is_none() {
            return Ok(None);
        }
        let repo = Reference::parse(&cache.repo).map_err(JobError::Reference)?;
        let rt = crate::runtime::blocking().map_err(|source| JobError::Io {
            action: "starting the runtime for",
            path: cache.repo.clone().into(),
            source,
        })?;
        let client = rt.block_on(Client::connect(&repo.registry, &self.registry, None))?;
        let there: Vec<String> = rt
            .block_on(registry::manage::tags(&client, &repo.repository))?
            .into_iter()
            .filter(|t| t.starts_with("k-"))
            .collect();
        let known = self.db().fleet_steps()?;
        // Steps others wrote: their size read once, used as of now.
        let mut seen = Vec::new();
        for t in there.iter().filter(|t| !known.iter().any(|k| k.0 == **t)) {
            if let Some(d) = rt.block_on(registry::manage::describe(&client, &repo.with_tag(t)))? {
                let bytes: u64 = d.manifest.layers().iter().map(|l| l.size()).sum();
                seen.push((t.clone(), i64::try_from(bytes).unwrap_or(i64::MAX)));
            }
        }
        self.db().fleet_note(&seen, false)?;
        let gone: Vec<String> = known
            .iter()
            .map(|k| k.0.clone())
            .filter(|t| !there.contains(t))
            .collect();
        self.db().fleet_forget(&gone)?;
        let steps: Vec<(String, i64, String)> = self
            .db()
            .fleet_steps()?
            .into_iter()
            .filter(|s| there.contains(&s.0))
            .collect();
        let mut total: u64 = steps.iter().map(|s| s.1.max(0) as u64).sum();
        let mut out = Trimmed {
            steps: steps.len(),
            ..Default::default()
        };
        for (t, bytes, used) in &steps {
            let stale = oldest.as_ref().is_some_and(|o| used < o);
            let over = max.is_some_and(|m| total > m);
            if !stale && !over {
                continue;
            }
            let head = rt.block_on(registry::pull::head(&client, &repo.with_tag(t)));
            let digest = match head {
                Ok(h) => h.digest,
                Err(registry::RegistryError::Status { status: 404, .. }) => {
                    self.db().fleet_forget(std::slice::from_ref(t))?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let deleted = rt.block_on(registry::manage::delete_manifest(
                &client,
                &repo.repository,
                &digest,
            ))?;
            // A registry that refuses deletes refuses them all: the bound
            // cannot be kept, and nothing is counted as gone.
            if deleted == registry::manage::Deleted::Refused {
                return Err(JobError::NoDeletes(repo.registry.clone()));
            }
            self.db().fleet_forget(std::slice::from_ref(t))?;
            total = total.saturating_sub(bytes.max(&0).unsigned_abs());
            out.deleted += 1;
            out.steps -= 1;
        }
        out.bytes = total;
        Ok(Some(out))
    }
}
