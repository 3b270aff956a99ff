//! Tracked base images: their digests checked with HEAD requests on their
//! schedules; a changed digest pulls the new base into the store (so builds
//! use it) and warms every target whose Dockerfile is FROM it.

use super::config::Target;
use super::{JobError, Service};
use crate::registry::{self, Client, Platform, Reference};
use std::path::Path;
use std::sync::Arc;

impl Service {
    /// Checks every `[[base]]` once now, then each on its schedule, for ever.
    pub async fn watch_bases(self: Arc<Self>) {
        for base in &self.config.bases {
            self.check_base(&base.image).await;
        }
        let scheduled: Vec<(String, croner::Cron)> = self
            .config
            .bases
            .iter()
            .filter_map(|b| {
                let cron = super::config::cron(b.check.as_deref()?).ok()?;
                Some((b.image.clone(), cron))
            })
            .collect();
        while let Some(due) = super::next_due(&scheduled).await {
            for image in due {
                self.check_base(image).await;
            }
        }
    }

    /// One check of base `image`: record its digest; when it changed since
    /// the last check (or the store lacks it), pull it; when it changed,
    /// queue the targets built on it. The digest seen; None when the
    /// registry could not be asked or the pull failed (a later check tries
    /// again).
    pub async fn check_base(&self, image: &str) -> Option<String> {
        let outcome = self.head_base(image).await;
        let previous = self.db().base(image).ok().flatten().and_then(|b| b.digest);
        let digest = match &outcome {
            Ok(d) => d.clone(),
            Err(e) => {
                eprintln!("kiln serve: checking base {image}: {e}");
                let _ = self.db().record_base(image, Err(&e.to_string()));
                return None;
            }
        };
        let changed = previous.as_ref().is_some_and(|p| *p != digest);
        let store = self.open_store();
        let missing = store
            .as_ref()
            .is_ok_and(|s| crate::image::Image::resolve(s, image).is_err());
        if changed || missing {
            // The new digest is recorded only once its image is here: a
            // pull that fails is tried again at the next check, not
            // forgotten as a change already seen.
            if let Err(e) = self.pull_base(image).await {
                eprintln!("kiln serve: pulling base {image}: {e}");
                let _ = self.db().record_base(image, Err(&e.to_string()));
                return None;
            }
        }
        let _ = self.db().record_base(image, Ok(&digest));
        if !changed {
            return Some(digest);
        }
        self.metrics
            .base_changes
            .get_or_create(&vec![("image".to_string(), image.to_string())])
            .inc();
        for t in &self.config.targets {
            let wants = t.triggers.iter().any(|x| x == "base");
            if wants
                && built_on(t, &self.context_dir(t), image)
                && let Err(e) = self.enqueue(&t.name, "base")
            {
                eprintln!("kiln serve: queueing {}: {e}", t.name);
            }
        }
        Some(digest)
    }

    async fn head_base(&self, image: &str) -> Result<String, JobError> {
        let reference = Reference::parse(image).map_err(JobError::Reference)?;
        let client = Client::connect(&reference.registry, &self.registry, None).await?;
        let head = registry::pull::head(&client, &reference).await?;
        if let Some(n) = head.ratelimit_remaining {
            self.metrics
                .ratelimit_remaining
                .get_or_create(&vec![("registry".to_string(), reference.registry.clone())])
                .set(n as i64);
        }
        Ok(head.digest.to_string())
    }

    async fn pull_base(&self, image: &str) -> Result<(), JobError> {
        let reference = Reference::parse(image).map_err(JobError::Reference)?;
        let store = self.open_store()?;
        let transfer = registry::Transfer::stderr(crate::progress::Mode::Quiet, "pulled");
        registry::pull::pull_via_mirrors(
            &store,
            &self.registry,
            &reference,
            &Platform::host(),
            &transfer,
        )
        .await?;
        Ok(())
    }

    /// Where a target's Dockerfile can be read: its directory, or its
    /// checkout (absent until its first job).
    pub fn context_dir(&self, target: &Target) -> std::path::PathBuf {
        match &target.context {
            Some(dir) => dir.clone(),
            None => self.checkout_dir(target),
        }
    }
}

/// True when a stage of the target's Dockerfile is FROM `image` (names
/// compared as references: `debian` is `docker.io/library/debian:latest`).
/// A Dockerfile that cannot be read yet (a git target never checked out)
/// counts as built on it.
fn built_on(target: &Target, context: &Path, image: &str) -> bool {
    let Some(file) = target.typed_dockerfile(context) else {
        return true;
    };
    let want = Reference::parse(image).map(|r| r.to_string());
    file.stages.iter().any(|s| {
        // A FROM with a variable may name it: rather warm than miss.
        s.from.image.contains('$')
            || Reference::parse(&s.from.image).map(|r| r.to_string()).ok() == want.clone().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_built_on_the_bases_its_stages_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM debian AS a\nFROM 127.0.0.1:5000/kiln/base:1\n",
        )
        .unwrap();
        let t: Target = toml::from_str("name = \"t\"\ncontext = \"/x\"\n").unwrap();
        assert!(built_on(&t, dir.path(), "docker.io/library/debian:latest"));
        assert!(built_on(&t, dir.path(), "127.0.0.1:5000/kiln/base:1"));
        assert!(!built_on(&t, dir.path(), "127.0.0.1:5000/kiln/base:2"));
        assert!(built_on(&t, Path::new("/nonexistent"), "anything"));
    }
}
