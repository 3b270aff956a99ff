//! The plan of a build, decided before anything runs: which stage each
//! FROM names (after expansion with the global ARGs), which stages each
//! stage reads (its FROM, `COPY --from`, `RUN --mount=from=`, and the ONBUILD
//! triggers of a stage it is built FROM), which stages the target needs,
//! and the checks BuildKit makes on them (stage order, `--platform`). Pure
//! functions of the typed Dockerfile: unit-tested without root or a store.

mod epoch;
mod scope;

pub use epoch::{Epoch, build_args, requested as requested_epoch, settle as settle_epoch};
pub use scope::Scope;

use crate::dockerfile::instructions::{Dockerfile, Instruction, Stage, Step};
use crate::dockerfile::shell::Lexer;
use crate::image::config;

/// Why a Dockerfile cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A step is at fault (its span is where the error points).
    #[error("{message}")]
    Step {
        /// The step.
        step: Box<Step>,
        /// What is wrong.
        message: String,
    },
    /// `--target` names no stage.
    #[error("target stage {name:?} could not be found")]
    NoTarget {
        /// The name asked for.
        name: String,
        /// The stage names there are.
        stages: Vec<String>,
        /// The stage name nearest to it, when one is near.
        suggestion: Option<String>,
    },
    /// A build input is not valid (no step to point at).
    #[error("{0}")]
    Invalid(String),
}

impl PlanError {
    fn at(step: &Step, message: impl Into<String>) -> PlanError {
        PlanError::Step {
            step: Box::new(step.clone()),
            message: message.into(),
        }
    }
}

/// What a plan is made from besides the Dockerfile.
#[derive(Debug, Default, Clone)]
pub struct Inputs<'a> {
    /// `--target`, when given.
    pub target: Option<&'a str>,
    /// `--build-arg` values, last one winning.
    pub build_args: &'a [(String, String)],
    /// The names of `--build-context`s: they replace stages of that name,
    /// which are then never built for them.
    pub named: &'a [String],
    /// `--platform`: the platform built for, `os/arch[/variant]` (None:
    /// this machine's).
    pub platform: Option<&'a str>,
    /// `--source-date-epoch` (or the environment's, as the CLI reads it):
    /// the build's SOURCE_DATE_EPOCH unless a build arg sets one.
    pub source_date_epoch: Option<i64>,
}

/// Everything a build decides before a stage runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The stage built.
    pub target: usize,
    /// The global ARGs (before the first FROM) with their values.
    pub global: Scope,
    /// The ARGs the build defines without a declaration (platform, TARGETSTAGE).
    pub automatic: Scope,
    /// Each stage's FROM, expanded with the global ARGs.
    pub bases: Vec<String>,
    /// Each stage's platform: its `FROM --platform`, else the target's.
    pub platforms: Vec<String>,
    /// The earlier stages each stage reads.
    pub deps: Vec<Vec<usize>>,
    /// The target and the stages it needs, in file order.
    pub needed: Vec<usize>,
    /// Where SOURCE_DATE_EPOCH comes from, when the build sets it.
    pub epoch: Option<Epoch>,
    /// The build args as ARG lines see them (SOURCE_DATE_EPOCH resolved).
    pub build_args: Vec<(String, String)>,
}

impl Plan {
    /// Plans `file`: the target, the global ARGs, every FROM, the stage
    /// graph and BuildKit's checks on them.
    pub fn new(file: &Dockerfile, inputs: &Inputs) -> Result<Plan, PlanError> {
        let stages = &file.stages;
        let given = epoch::build_args(inputs.build_args, inputs.source_date_epoch);
        let target = match inputs.target {
            Some(t) => stage_named(stages, stages.len(), t).ok_or_else(|| {
                let names: Vec<String> =
                    stages.iter().filter_map(|s| s.from.name.clone()).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                PlanError::NoTarget {
                    suggestion: crate::dockerfile::flags::suggest(&t.to_lowercase(), &refs)
                        .map(str::to_string),
                    name: t.to_string(),
                    stages: names,
                }
            })?,
            None => stages.len() - 1,
        };
        // TARGETSTAGE names the stage built ("default" when it has no name).
        let host = host_platform();
        let target_platform = inputs.platform.unwrap_or(&host);
        let mut automatic = platform_args(target_platform);
        automatic.set(
            "TARGETSTAGE",
            stages[target].from.name.as_deref().unwrap_or("default"),
        );
        let mut global = Scope::default();
        for step in &file.global_args {
            if let Instruction::Arg(decls) = &step.instruction {
                for d in decls {
                    let value = arg_value(
                        &d.name,
                        d.default.as_deref(),
                        &given,
                        &global,
                        &automatic,
                        file.escape,
                    )
                    .map_err(|m| PlanError::at(step, m))?;
                    if let Some(v) = value {
                        global.set(&d.name, &v);
                    }
                }
            }
        }
        let bases = bases(stages, &global, &automatic, file.escape)?;
        let platforms = stages
            .iter()
            .map(|stage| match &stage.from.platform {
                Some(raw) => check_platform(raw, &global, &automatic, file.escape)
                    .map_err(|m| PlanError::at(&stage.from_step, m)),
                None => Ok(target_platform.to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_stage_order(stages)?;
        let deps: Vec<Vec<usize>> = (0..stages.len())
            .map(|i| stage_deps(stages, &bases, i, inputs.named))
            .collect();
        let needed = needed_stages(&deps, target);
        let mut build_args = given;
        let epoch = epoch::resolve(file, &mut build_args, &mut global)?;
        Ok(Plan {
            target,
            global,
            automatic,
            bases,
            platforms,
            deps,
            needed,
            epoch,
            build_args,
        })
    }
}

/// The stage `name` refers to from a stage at index `before` (a FROM,
/// `--from`, `--target`): a stage of that name (names are not case
/// sensitive) before it, the latest when names repeat; a number is a
/// stage's index only for `--from`, see [`from_ref`].
pub fn stage_named(stages: &[Stage], before: usize, name: &str) -> Option<usize> {
    let lower = name.to_lowercase();
    stages[..before.min(stages.len())]
        .iter()
        .rposition(|s| s.from.name.as_deref() == Some(lower.as_str()))
}

/// The stage a `COPY --from` or `RUN --mount=from=` in stage `before`
/// names: by name, or by index (`--from=0`); None means an image.
pub fn from_ref(stages: &[Stage], before: usize, name: &str) -> Option<usize> {
    stage_named(stages, before, name).or_else(|| name.parse::<usize>().ok().filter(|&n| n < before))
}

/// The value of ARG `name`: a --build-arg, else the default expanded
/// with `scope`, else the value `scope` or `automatic` has.
pub fn arg_value(
    name: &str,
    default: Option<&str>,
    build_args: &[(String, String)],
    scope: &Scope,
    automatic: &Scope,
    escape: char,
) -> Result<Option<String>, String> {
    if let Some((_, v)) = build_args.iter().rev().find(|(k, _)| k == name) {
        return Ok(Some(v.clone()));
    }
    if let Some(d) = default {
        return scope.expand(d, escape).map(Some);
    }
    Ok(scope
        .get(name)
        .or_else(|| automatic.get(name))
        .map(str::to_string))
}

/// This machine's platform, `linux/ARCH`.
pub fn host_platform() -> String {
    format!("linux/{}", config::host_architecture())
}

/// ARG values the build defines without a declaration: the target
/// platform `target` (`os/arch[/variant]`) and this machine's.
pub fn platform_args(target: &str) -> Scope {
    let host = host_platform();
    let mut scope = Scope::default();
    for (prefix, platform) in [("TARGET", target), ("BUILD", host.as_str())] {
        let mut parts = platform.splitn(3, '/');
        let os = parts.next().unwrap_or("linux");
        let arch = parts.next().unwrap_or_default();
        let variant = parts.next().unwrap_or_default();
        scope.set(&format!("{prefix}PLATFORM"), platform);
        scope.set(&format!("{prefix}OS"), os);
        scope.set(&format!("{prefix}ARCH"), arch);
        scope.set(&format!("{prefix}VARIANT"), variant);
    }
    scope
}

/// Each stage's FROM expanded with the global ARGs (over the automatic
/// ones): `FROM $BASE` may name a stage.
pub fn bases(
    stages: &[Stage],
    global: &Scope,
    automatic: &Scope,
    escape: char,
) -> Result<Vec<String>, PlanError> {
    let scope = automatic.overlaid(global);
    stages
        .iter()
        .map(|stage| {
            scope
                .expand(&stage.from.image, escape)
                .map_err(|e| PlanError::at(&stage.from_step, e))
        })
        .collect()
}

/// `FROM --platform=`, expanded with the global ARGs, must name a Linux
/// platform; the platform, normalized.
pub fn check_platform(
    raw: &str,
    global: &Scope,
    automatic: &Scope,
    escape: char,
) -> Result<String, String> {
    let scope = automatic.overlaid(global);
    let expansion = Lexer::new(escape)
        .process_word(raw, &|k: &str| scope.get(k))
        .map_err(|e| e.to_string())?;
    let value = expansion.value;
    if value.is_empty() {
        let names: Vec<&str> = scope.iter().map(|(n, _)| n).collect();
        let hint = expansion
            .unset
            .iter()
            .find_map(|u| crate::dockerfile::flags::suggest(u, &names))
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        return Err(format!("empty platform value from expression {raw}{hint}"));
    }
    let parts: Vec<&str> = value.split('/').collect();
    if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "failed to parse platform {raw}: {value:?} is not os/arch[/variant]"
        ));
    }
    if parts[0] != "linux" {
        return Err(format!(
            "FROM --platform={value}: kiln builds Linux images only"
        ));
    }
    normalize_platform(&value)
}

/// `os/arch[/variant]` as OCI's platform fields name it: lower case,
/// docker's aliases (`x86_64`, `aarch64`, `armhf`...) mapped, arm64's
/// default variant `v8` left out.
pub fn normalize_platform(text: &str) -> Result<String, String> {
    let lower = text.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('/').collect();
    if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "invalid platform {text:?}: use os/arch[/variant], such as linux/arm64"
        ));
    }
    let (arch, variant) = match (parts[1], parts.get(2).copied()) {
        ("x86_64" | "x86-64", v) => ("amd64", v),
        ("aarch64", v) | ("arm64", v) => ("arm64", v.filter(|v| *v != "v8")),
        ("armhf", _) => ("arm", Some("v7")),
        ("armel", _) => ("arm", Some("v6")),
        ("arm", None) => ("arm", Some("v7")),
        ("i386" | "i686", v) => ("386", v),
        (a, v) => (a, v),
    };
    Ok(match variant {
        Some(v) => format!("{}/{arch}/{v}", parts[0]),
        None => format!("{}/{arch}", parts[0]),
    })
}

/// A `COPY --from` or `RUN --mount=from=` naming a stage defined later is
/// an error, as in BuildKit (it would otherwise be taken for an image).
pub fn check_stage_order(stages: &[Stage]) -> Result<(), PlanError> {
    for (i, stage) in stages.iter().enumerate() {
        for step in &stage.steps {
            let froms: Vec<&str> = match &step.instruction {
                Instruction::Copy(c) | Instruction::Add(c) => {
                    c.from.as_deref().into_iter().collect()
                }
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_deref()).collect(),
                _ => Vec::new(),
            };
            for from in froms {
                let earlier = stage_named(stages, i, from).is_some();
                let later = stage_named(stages, stages.len(), from).is_some_and(|j| j >= i);
                if later && !earlier {
                    let current = stage
                        .from
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("stage-{i}"));
                    return Err(PlanError::at(
                        step,
                        format!(
                            "cannot copy from stage {from:?}, it needs to be defined before current stage {current:?}"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The earlier stages stage `i` reads: its FROM, `COPY --from` and
/// `RUN --mount=from=`; a name in `named` (a `--build-context`) is not a
/// stage.
pub fn stage_deps(stages: &[Stage], bases: &[String], i: usize, named: &[String]) -> Vec<usize> {
    let is_named = |name: &str| named.iter().any(|n| n == name);
    let find = |name: &str| match is_named(name) {
        true => None,
        false => from_ref(stages, i, name),
    };
    let base = match is_named(&bases[i]) {
        true => None,
        false => from_stage(stages, bases, i),
    };
    let mut deps: Vec<usize> = base.into_iter().collect();
    // A stage FROM a stage runs that stage's ONBUILD triggers, whose
    // sources are this build's stages too.
    let triggers = base.into_iter().flat_map(|b| {
        stages[b].steps.iter().filter_map(|s| match &s.instruction {
            Instruction::Onbuild(trigger, _) => Some(trigger.as_ref()),
            _ => None,
        })
    });
    let own = stages[i].steps.iter().map(|s| &s.instruction);
    for instruction in triggers.chain(own) {
        match instruction {
            Instruction::Copy(c) => deps.extend(c.from.as_deref().and_then(find)),
            Instruction::Run(r) => deps.extend(
                r.mounts
                    .iter()
                    .filter_map(|m| m.from.as_deref().and_then(find)),
            ),
            _ => {}
        }
    }
    deps.sort_unstable();
    deps.dedup();
    deps
}

/// The earlier stage stage `i` is FROM, if it is FROM a stage: by name
/// only (`FROM 0` is an image, as in BuildKit), after expansion.
pub fn from_stage(stages: &[Stage], bases: &[String], i: usize) -> Option<usize> {
    stage_named(stages, i, &bases[i])
}

/// The target and every stage it depends on, in file order.
pub fn needed_stages(deps: &[Vec<usize>], target: usize) -> Vec<usize> {
    let mut need = vec![false; deps.len()];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !std::mem::replace(&mut need[i], true) {
            todo.extend(&deps[i]);
        }
    }
    (0..deps.len()).filter(|&i| need[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{Source, instructions, parse};

    fn stages(text: &str) -> Vec<Stage> {
        let ast = parse(&Source::new("Dockerfile", text.as_bytes())).unwrap();
        let (file, errors) = instructions::typed(&ast);
        assert!(errors.is_empty(), "{errors:?}");
        file.stages
    }

    fn plan(text: &str, global: &[(&str, &str)]) -> (Vec<Stage>, Vec<String>, Vec<Vec<usize>>) {
        let stages = stages(text);
        let global: Scope = global
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let bases = bases(&stages, &global, &Scope::default(), '\\').unwrap();
        let deps = (0..stages.len())
            .map(|i| stage_deps(&stages, &bases, i, &[]))
            .collect();
        (stages, bases, deps)
    }

    #[test]
    fn from_names_a_stage_after_expansion_and_by_name_only() {
        let (stages, bases, deps) = plan(
            "FROM a AS base\nFROM $B AS child\nFROM 0\nFROM a AS base\nFROM base\n",
            &[("B", "BASE")],
        );
        assert_eq!(bases[1], "BASE");
        assert_eq!(from_stage(&stages, &bases, 1), Some(0));
        // `FROM 0` is an image, as in BuildKit.
        assert_eq!(from_stage(&stages, &bases, 2), None);
        // A repeated name: the latest before.
        assert_eq!(from_stage(&stages, &bases, 4), Some(3));
        assert_eq!(deps[1], [0]);
        assert_eq!(needed_stages(&deps, 1), [0, 1]);
        assert_eq!(needed_stages(&deps, 2), [2]);
    }

    #[test]
    fn a_stage_reads_the_sources_of_its_base_stages_onbuild_triggers() {
        let (_, _, deps) = plan(
            "FROM a AS other\nFROM a AS base\nONBUILD COPY --from=other /x /x\nFROM base\nRUN --mount=from=other,target=/m true\n",
            &[],
        );
        assert_eq!(deps[1], Vec::<usize>::new());
        assert_eq!(deps[2], [0, 1]);
        assert_eq!(needed_stages(&deps, 2), [0, 1, 2]);
    }

    #[test]
    fn copy_from_a_later_stage_is_an_error() {
        let s = stages("FROM a AS first\nCOPY --from=build /x /x\nFROM a AS build\n");
        let Err(PlanError::Step { step, message }) = check_stage_order(&s) else {
            panic!("no error");
        };
        assert_eq!(
            message,
            "cannot copy from stage \"build\", it needs to be defined before current stage \"first\""
        );
        assert_eq!(step.line, 2);
        assert!(
            check_stage_order(&stages(
                "FROM a AS build\nFROM a\nCOPY --from=build /x /x\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn platform_values_are_checked_as_buildkit_does() {
        let auto = platform_args("linux/arm64");
        let none = Scope::default();
        assert_eq!(
            check_platform("$BUILDPLATFORM", &none, &auto, '\\').unwrap(),
            host_platform()
        );
        assert_eq!(
            check_platform("$TARGETPLATFORM", &none, &auto, '\\').unwrap(),
            "linux/arm64"
        );
        assert_eq!(auto.get("TARGETARCH"), Some("arm64"));
        assert_eq!(auto.get("TARGETVARIANT"), Some(""));
        assert_eq!(
            normalize_platform("Linux/AARCH64/v8").unwrap(),
            "linux/arm64"
        );
        assert_eq!(normalize_platform("linux/arm").unwrap(), "linux/arm/v7");
        assert_eq!(normalize_platform("linux/x86_64").unwrap(), "linux/amd64");
        assert!(normalize_platform("linux").is_err());
        assert_eq!(
            check_platform("$BULIDPLATFORM", &none, &auto, '\\').unwrap_err(),
            "empty platform value from expression $BULIDPLATFORM (did you mean BUILDPLATFORM?)"
        );
        assert!(
            check_platform("linux/${MYARCH}", &none, &auto, '\\')
                .unwrap_err()
                .starts_with("failed to parse platform linux/${MYARCH}")
        );
        assert!(
            check_platform("windows/amd64", &none, &auto, '\\')
                .unwrap_err()
                .contains("Linux images only")
        );
    }
}
