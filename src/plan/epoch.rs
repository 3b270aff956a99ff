//! SOURCE_DATE_EPOCH as BuildKit's dockerfile2llb (epoch.go) resolves it:
//! from `--build-arg SOURCE_DATE_EPOCH` or the Dockerfile's global ARG of
//! that name, as seconds, `context`, or the name of a source-only stage
//! (FROM scratch and one remote ADD) whose source's time it takes.

use super::{PlanError, Scope};
use crate::dockerfile::instructions::{Dockerfile, Instruction, SourceKind, Stage, source_kind};

const NAME: &str = "SOURCE_DATE_EPOCH";

/// Where a build's SOURCE_DATE_EPOCH comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Epoch {
    /// Seconds since 1970.
    Seconds(i64),
    /// The Last-Modified time of the file at this URL (a source stage's ADD).
    Url(String),
}

/// The build args a build plans with: `given` (`--build-arg`s), and
/// `source_date_epoch` (`--source-date-epoch`, or the environment's) as
/// `SOURCE_DATE_EPOCH` unless one of them sets it. The one place the
/// precedence is decided.
pub fn build_args(
    given: &[(String, String)],
    source_date_epoch: Option<i64>,
) -> Vec<(String, String)> {
    let mut args = given.to_vec();
    if let Some(secs) = source_date_epoch
        && !args.iter().any(|(k, _)| k == NAME)
    {
        args.push((NAME.into(), secs.to_string()));
    }
    args
}

/// The epoch a build is asked for besides its build args: `flag`
/// (`--source-date-epoch`), else `env` (the SOURCE_DATE_EPOCH
/// environment variable, as the CLI read it; an empty one is none, as
/// buildx reads it), in seconds or `git` (then `git_time`: the context's
/// HEAD's commit time). None when `build_arg_set`: a build arg wins, and
/// nothing else is read.
pub fn requested(
    flag: Option<&str>,
    env: Option<&str>,
    build_arg_set: bool,
    git_time: impl FnOnce() -> Result<i64, String>,
) -> Result<Option<i64>, String> {
    if build_arg_set {
        return Ok(None);
    }
    let (value, from) = match (flag, env) {
        (Some(v), _) => (v, "--source-date-epoch"),
        (None, Some(v)) if !v.trim().is_empty() => (v, NAME),
        (None, _) => return Ok(None),
    };
    if value == "git" {
        return git_time().map(Some).map_err(|e| format!("{from}=git: {e}"));
    }
    value.trim().parse::<i64>().map(Some).map_err(|_| {
        format!("{from}={value}: expected seconds since 1970 (as `date +%s` prints) or \"git\"")
    })
}

/// The epoch the build args or the global ARGs set, checked as BuildKit
/// checks it. The build arg and the global ARG then hold the epoch in
/// seconds, or are gone when there is none (`context` of a local
/// directory, an empty value), as BuildKit's `setBuildArgValue` leaves them.
pub(super) fn resolve(
    file: &Dockerfile,
    build_args: &mut Vec<(String, String)>,
    global: &mut Scope,
) -> Result<Option<Epoch>, PlanError> {
    let value = match build_args.iter().rev().find(|(k, _)| k == NAME) {
        Some((_, v)) => v.clone(),
        None => match global.get(NAME) {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => return Ok(None),
        },
    };
    let mut settle = |value: &str| settle(build_args, global, value);
    if value.is_empty() {
        settle("");
        return Ok(None);
    }
    if let Ok(secs) = value.trim().parse::<i64>() {
        settle(&secs.to_string());
        return Ok(Some(Epoch::Seconds(secs)));
    }
    // A local context carries no source time (BuildKit's MainContext has
    // no metadata for one): no epoch.
    if value == "context" {
        settle("");
        return Ok(None);
    }
    let Some(stage) = file.stages.iter().find(|s| {
        s.from
            .name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(&value))
    }) else {
        return Err(PlanError::Invalid(format!(
            "invalid SOURCE_DATE_EPOCH: {value}"
        )));
    };
    let mut args = global.clone();
    args.remove(NAME);
    let url = source_stage(stage, build_args, args, file.escape)
        .map_err(|m| PlanError::at(&stage.from_step, m))?;
    // The seconds are known once the URL's time is read, when the build
    // starts: the build settles the values then.
    Ok(Some(Epoch::Url(url)))
}

/// Sets SOURCE_DATE_EPOCH where the build args and the global ARGs have
/// it to `value` (seconds), or removes it there when `value` is empty.
pub fn settle(build_args: &mut Vec<(String, String)>, global: &mut Scope, value: &str) {
    if value.is_empty() {
        build_args.retain(|(k, _)| k != NAME);
    } else {
        for (_, v) in build_args.iter_mut().filter(|(k, _)| k == NAME) {
            *v = value.to_string();
        }
    }
    if global.get(NAME).is_some() {
        match value.is_empty() {
            true => global.remove(NAME),
            false => global.set(NAME, value),
        }
    }
}

/// The URL of a source-only stage's one remote ADD.
fn source_stage(
    stage: &Stage,
    build_args: &[(String, String)],
    mut args: Scope,
    escape: char,
) -> Result<String, String> {
    let base = args.expand(&stage.from.image, escape).map_err(|e| {
        format!(
            "failed to process source stage base name {:?}: {e}",
            stage.from.image
        )
    })?;
    if base != "scratch" {
        return Err(format!("{NAME} stage must use FROM scratch"));
    }
    let mut url = None;
    for step in &stage.steps {
        match &step.instruction {
            Instruction::Arg(decls) => {
                for d in decls {
                    let v = match build_args.iter().rev().find(|(k, _)| *k == d.name) {
                        Some((_, v)) => v.clone(),
                        None => match &d.default {
                            Some(raw) => args.expand(raw, escape)?,
                            None => continue,
                        },
                    };
                    args.set(&d.name, &v);
                }
            }
            Instruction::Add(c) => {
                if url.is_some() {
                    return Err(format!("{NAME} stage must contain exactly one remote ADD"));
                }
                if !c.heredocs.is_empty() || c.sources.len() != 1 {
                    return Err(format!(
                        "{NAME} stage must contain exactly one remote ADD source"
                    ));
                }
                let src = args.expand(&c.sources[0], escape)?;
                match source_kind(&src) {
                    SourceKind::Http => url = Some(src),
                    SourceKind::Git => {
                        return Err(format!(
                            "{NAME} from a git source is not supported by kiln yet: give the commit time as a number"
                        ));
                    }
                    SourceKind::Local => {
                        return Err(format!(
                            "{NAME} stage source must be a single HTTP(S) or Git ADD"
                        ));
                    }
                }
            }
            _ => {
                let name = step
                    .original
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_lowercase();
                return Err(format!(
                    "{NAME} stage does not meet source-only requirements: unsupported {name} instruction"
                ));
            }
        }
    }
    url.ok_or_else(|| format!("{NAME} stage must contain exactly one remote ADD"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_beats_the_environment_and_a_build_arg_beats_both() {
        let git = || Ok(7);
        let no_git = || -> Result<i64, String> { panic!("git read") };
        assert_eq!(requested(Some("5"), Some("6"), false, no_git), Ok(Some(5)));
        assert_eq!(requested(None, Some(" 6 "), false, no_git), Ok(Some(6)));
        assert_eq!(requested(None, Some(""), false, no_git), Ok(None));
        assert_eq!(requested(None, None, false, no_git), Ok(None));
        assert_eq!(requested(Some("bad"), Some("6"), true, no_git), Ok(None));
        assert_eq!(requested(None, Some("git"), false, git), Ok(Some(7)));
        assert_eq!(
            requested(Some("git"), None, false, || Err("not a checkout".into())),
            Err("--source-date-epoch=git: not a checkout".into())
        );
        assert_eq!(
            requested(None, Some("soon"), false, no_git),
            Err("SOURCE_DATE_EPOCH=soon: expected seconds since 1970 (as `date +%s` prints) or \"git\"".into())
        );
    }

    #[test]
    fn a_build_arg_keeps_its_epoch_over_the_requested_one() {
        let given = vec![("SOURCE_DATE_EPOCH".to_string(), "1".to_string())];
        assert_eq!(build_args(&given, Some(2)), given);
        assert_eq!(
            build_args(&[], Some(2)),
            [("SOURCE_DATE_EPOCH".to_string(), "2".to_string())]
        );
    }
    use crate::dockerfile::{Source, instructions, parse};

    fn resolve_text(text: &str, build_args: &[(&str, &str)]) -> Result<Option<Epoch>, String> {
        let ast = parse(&Source::new("Dockerfile", text.as_bytes())).unwrap();
        let (file, errors) = instructions::typed(&ast);
        assert!(errors.is_empty(), "{errors:?}");
        let mut args: Vec<(String, String)> = build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut global = Scope::default();
        for step in &file.global_args {
            if let Instruction::Arg(decls) = &step.instruction {
                for d in decls {
                    global.set(&d.name, d.default.as_deref().unwrap_or(""));
                }
            }
        }
        resolve(&file, &mut args, &mut global).map_err(|e| e.to_string())
    }

    #[test]
    fn epochs_come_from_numbers_context_or_a_source_stage() {
        assert_eq!(resolve_text("FROM scratch\n", &[]), Ok(None));
        assert_eq!(
            resolve_text("ARG SOURCE_DATE_EPOCH=42\nFROM scratch\n", &[]),
            Ok(Some(Epoch::Seconds(42)))
        );
        assert_eq!(
            resolve_text("ARG SOURCE_DATE_EPOCH=42\nFROM scratch\n", &[(NAME, "7")]),
            Ok(Some(Epoch::Seconds(7)))
        );
        assert_eq!(
            resolve_text("FROM scratch\n", &[(NAME, "context")]),
            Ok(None)
        );
        assert_eq!(
            resolve_text(
                "ARG SOURCE_DATE_EPOCH=src\nFROM scratch AS src\nARG V=1\nADD https://h/x-$V.tar /\nFROM scratch\n",
                &[]
            ),
            Ok(Some(Epoch::Url("https://h/x-1.tar".into())))
        );
        assert_eq!(
            resolve_text("ARG SOURCE_DATE_EPOCH=nope\nFROM scratch\n", &[]),
            Err("invalid SOURCE_DATE_EPOCH: nope".into())
        );
        for (stage, want) in [
            ("FROM busybox AS s\n", "stage must use FROM scratch"),
            (
                "FROM scratch AS s\nCOPY a /\n",
                "unsupported copy instruction",
            ),
            ("FROM scratch AS s\n", "must contain exactly one remote ADD"),
            (
                "FROM scratch AS s\nADD a b /\n",
                "exactly one remote ADD source",
            ),
            (
                "FROM scratch AS s\nADD a /\n",
                "must be a single HTTP(S) or Git ADD",
            ),
        ] {
            let text = format!("ARG SOURCE_DATE_EPOCH=s\n{stage}FROM scratch\n");
            let got = resolve_text(&text, &[]).unwrap_err();
            assert!(got.contains(want), "{stage:?}: {got}");
        }
    }
}
