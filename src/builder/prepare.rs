//! Everything a build decides before a stage runs: the Dockerfile parsed
//! and typed, the `.dockerignore`, the context opened as a root, the plan
//! (target, global ARGs, FROMs, the stage graph, platforms), BuildKit's
//! checks, the emulators foreign stages need, and SOURCE_DATE_EPOCH as
//! seconds. Nothing here runs a step.

use super::report::Recorder;
use super::{BuildError, Options, Pull, build_args_of, fail, fetch, pull_base};
use crate::context::ignore::Matcher;
use crate::dockerfile::instructions::{self, Dockerfile, Instruction};
use crate::dockerfile::{Ast, Source, lint, parse};
use crate::image::{Image, ImageConfig};
use crate::plan::{self, Plan};
use crate::sandbox::{self, fs::Root};
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A build decided: what every stage reads and nothing changes.
pub(super) struct Prepared {
    /// The Dockerfile, typed.
    pub file: Dockerfile,
    /// The context's `.dockerignore` (or `<Dockerfile>.dockerignore`).
    pub ignore: Matcher,
    /// The build context: every source path is resolved inside it.
    pub context: Arc<Root>,
    /// Its real path (no symlink in it): the stat cache's key.
    pub context_real: PathBuf,
    /// The plan, its SOURCE_DATE_EPOCH settled in its args.
    pub plan: Plan,
    /// SOURCE_DATE_EPOCH: layer mtimes are clamped to it, `created` times
    /// are it, and it is an input of every step's key.
    pub epoch: Option<i64>,
}

/// Parses, plans and checks the build of `source` with `opts`; the
/// checks' findings go to `report`.
pub(super) fn prepare(
    store: &Store,
    source: &Source,
    opts: &Options,
    report: &Recorder,
) -> Result<Prepared, BuildError> {
    let ast = parse(source).map_err(|e| BuildError::Dockerfile(vec![e]))?;
    let (file, errors) = instructions::typed(&ast);
    // A build that cannot start still shows the checks of the file as
    // written (BuildKit's warnings come before its error).
    let lint_file_only = || {
        if let Ok(config) = lint_config(&ast, opts) {
            let findings = lint::lint_with(
                &ast,
                &lint::Inputs {
                    stages: Some(&[]),
                    config: Some(config),
                    ..Default::default()
                },
            );
            report.lint(&findings.iter().map(|f| f.short()).collect::<Vec<_>>());
        }
    };
    if !errors.is_empty() {
        lint_file_only();
        return Err(BuildError::Dockerfile(errors));
    }
    let ignore = Matcher::for_build(&opts.context, opts.dockerfile.as_deref())?;
    // The context is a root: sources, bind mounts and content digests are
    // resolved inside it, never through a symlink out of it. Its real path
    // (no symlink in it) keys the stat cache, as digests are asked by it.
    let context = Root::open(&opts.context)
        .map(Arc::new)
        .map_err(|e| BuildError::Context(format!("build context: {e}")))?;
    let context_real = context
        .real_path("")
        .map_err(|e| BuildError::Context(format!("build context: {e}")))?;
    let mut plan = Plan::new(
        &file,
        &plan::Inputs {
            target: opts.target.as_deref(),
            build_args: &opts.build_args,
            named: &opts
                .build_contexts
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>(),
            platform: opts.platform.as_deref(),
            source_date_epoch: opts.source_date_epoch,
        },
    )
    .map_err(super::plan_error)
    .inspect_err(|_| lint_file_only())?;
    // BuildKit's checks of the stages this build reaches, reported before
    // anything runs; `error=true` stops the build here.
    let findings = lint_build(
        store,
        &ast,
        &ignore,
        &plan.needed,
        &plan.bases,
        &plan.platforms,
        opts,
    )?;
    report.lint(&findings.iter().map(|f| f.short()).collect::<Vec<_>>());
    // A stage of another platform that runs something needs its emulator:
    // said before anything is built.
    for &i in &plan.needed {
        let runs = file.stages[i]
            .steps
            .iter()
            .any(|s| matches!(s.instruction, Instruction::Run(_)));
        let arch = plan.platforms[i].split('/').nth(1).unwrap_or_default();
        if runs {
            sandbox::emulator::check(Path::new(sandbox::emulator::BINFMT), arch)
                .map_err(|e| fail(e.to_string()).at(&file.stages[i].from_step))?;
        }
    }
    if lint_is_error(&ast, opts)? && !findings.is_empty() {
        let mut rules: Vec<&str> = findings.iter().map(|f| f.rule).collect();
        rules.sort_unstable();
        rules.dedup();
        return Err(BuildError::Invalid(format!(
            "lint violation found for rules: {}",
            rules.join(", ")
        )));
    }
    // The build's own epoch: builds in one process (`kiln serve`, the
    // API) each have theirs.
    let epoch = match plan.epoch.take() {
        Some(plan::Epoch::Seconds(secs)) => Some(secs),
        Some(plan::Epoch::Url(url)) => {
            let secs = fetch::modified(&url).map_err(|source| BuildError::Fetch {
                what: format!("SOURCE_DATE_EPOCH from {url}"),
                source,
            })?;
            let value = secs.map(|s| s.to_string()).unwrap_or_default();
            plan::settle_epoch(&mut plan.build_args, &mut plan.global, &value);
            secs
        }
        None => None,
    };
    Ok(Prepared {
        file,
        ignore,
        context,
        context_real,
        plan,
        epoch,
    })
}

/// The build args no ARG of the built stages (or the global scope)
/// declares, sorted, each once: BuildKit warns of them. Proxy args,
/// SOURCE_DATE_EPOCH and `BUILDKIT_*` are read without a declaration.
pub(super) fn unused_args<'a>(
    file: &Dockerfile,
    needed: &[usize],
    build_args: &'a [(String, String)],
) -> Vec<&'a str> {
    let declared: Vec<&str> = file
        .global_args
        .iter()
        .chain(needed.iter().flat_map(|&i| file.stages[i].steps.iter()))
        .filter_map(|s| match &s.instruction {
            Instruction::Arg(decls) => Some(decls.iter().map(|d| d.name.as_str())),
            _ => None,
        })
        .flatten()
        .collect();
    let mut unused: Vec<&str> = build_args
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| {
            !declared.contains(k)
                && !super::is_proxy_arg(k)
                && *k != "SOURCE_DATE_EPOCH"
                && !k.starts_with("BUILDKIT_")
        })
        .collect();
    unused.sort_unstable();
    unused.dedup();
    unused
}

/// The configuration of the checks: `BUILDKIT_DOCKERFILE_CHECK` when the
/// build sets it, else the file's `# check=` directive.
fn lint_config(ast: &Ast, opts: &Options) -> Result<lint::Config, BuildError> {
    let arg = opts
        .build_args
        .iter()
        .rev()
        .find(|(k, _)| k == "BUILDKIT_DOCKERFILE_CHECK")
        .map(|(_, v)| v.as_str());
    lint::Config::for_file(ast, arg).map_err(BuildError::Invalid)
}

fn lint_is_error(ast: &Ast, opts: &Options) -> Result<bool, BuildError> {
    Ok(lint_config(ast, opts)?.error)
}

/// The lint findings of a build: every rule, the dispatch ones for the
/// stages in `needed`, with the FROM images' variables (a base not in
/// the store is pulled first, as BuildKit resolves it before it converts).
fn lint_build(
    store: &Store,
    ast: &Ast,
    ignore: &Matcher,
    needed: &[usize],
    bases: &[String],
    platforms: &[String],
    opts: &Options,
) -> Result<Vec<lint::Finding>, BuildError> {
    let config = lint_config(ast, opts)?;
    let named: Vec<&str> = opts
        .build_contexts
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let base = |reference: &str| -> Option<lint::BaseFacts> {
        // The platform of the first stage FROM it.
        let target = bases
            .iter()
            .position(|b| b == reference)
            .and_then(|i| platforms.get(i))
            .cloned()
            .unwrap_or_else(plan::host_platform);
        // A named context replaces the image: its variables are not one's.
        if named.contains(&reference) || !bases.iter().any(|b| b == reference) {
            return None;
        }
        // Pulled here only when the stage would pull it anyway for being
        // missing (`--pull=always` pulls it again when the stage starts).
        // A multi-platform base gives the stage's platform's image.
        let wanted = crate::registry::Platform::parse(&target).ok();
        let image = match (
            Image::resolve_for(store, reference, wanted.as_ref()),
            opts.pull,
        ) {
            (Ok(image), _) => image,
            (Err(_), Pull::Missing | Pull::Always) => {
                pull_base(store, reference, opts, &target).ok()?
            }
            (Err(_), Pull::Never) => return None,
        };
        Some(base_facts(&image.config, &target))
    };
    let ignored = |path: &str| ignore.lint_excludes(path);
    let build_args = build_args_of(opts);
    Ok(lint::lint_with(
        ast,
        &lint::Inputs {
            ignored: Some(&ignored),
            base: Some(&base),
            build_args: &build_args,
            stages: Some(needed),
            config: Some(config),
        },
    ))
}

/// What the checks need of an image's config.
pub fn base_facts(config: &ImageConfig, platform: &str) -> lint::BaseFacts {
    let env = config
        .config
        .env
        .iter()
        .flatten()
        .map(|e| e.split('=').next().unwrap_or(e).to_string())
        .collect();
    let mut wanted = platform.split('/');
    let (os, arch) = (
        wanted.next().unwrap_or("linux"),
        wanted.next().unwrap_or_default(),
    );
    let other_platform =
        (config.architecture != arch || config.os != os).then(|| match &config.variant {
            Some(v) => format!("{}/{}/{v}", config.os, config.architecture),
            None => format!("{}/{}", config.os, config.architecture),
        });
    lint::BaseFacts {
        env,
        shell: config.config.shell.as_ref().is_some_and(|s| !s.is_empty()),
        other_platform,
        platform: platform.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> Dockerfile {
        let ast = parse(&Source::new("Dockerfile", text.as_bytes())).unwrap();
        let (file, errors) = instructions::typed(&ast);
        assert!(errors.is_empty());
        file
    }

    fn args(names: &[&str]) -> Vec<(String, String)> {
        names.iter().map(|n| (n.to_string(), "v".into())).collect()
    }

    #[test]
    fn unused_args_are_those_no_built_stage_declares() {
        let file = typed("ARG GLOBAL\nFROM scratch AS a\nARG IN_A\nFROM scratch AS b\nARG IN_B\n");
        let given = args(&[
            "IN_B",
            "IN_A",
            "GLOBAL",
            "NOPE",
            "HTTP_PROXY",
            "SOURCE_DATE_EPOCH",
            "BUILDKIT_INLINE_CACHE",
            "NOPE",
            "ALSO",
        ]);
        // Building only stage b: a's ARG is not read.
        assert_eq!(unused_args(&file, &[1], &given), ["ALSO", "IN_A", "NOPE"]);
        assert_eq!(unused_args(&file, &[0, 1], &given), ["ALSO", "NOPE"]);
        assert!(unused_args(&file, &[0, 1], &[]).is_empty());
    }
}
