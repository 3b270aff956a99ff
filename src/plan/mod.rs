//! The plan of a build, decided before anything runs: which stage each
//! FROM names (after expansion with the global ARGs), which stages each
//! stage reads (its FROM, `COPY --from`, `RUN --mount=from=`, and the ONBUILD
//! triggers of a stage it is built FROM), which stages the target needs,
//! and the checks BuildKit makes on them (stage order, `--platform`). Pure
//! functions of the typed Dockerfile: unit-tested without root or a store.

use crate::dockerfile::instructions::{Instruction, Stage, Step};
use crate::dockerfile::shell::Lexer;
use crate::image::config;

/// Why a Dockerfile cannot be planned: the message and the step it is about.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    /// The step at fault (its span is where the error points).
    pub step: Box<Step>,
    /// What is wrong.
    pub message: String,
}

/// Each stage's FROM expanded with the global ARGs (then the automatic
/// ones): `FROM $BASE` may name a stage.
pub fn bases(
    stages: &[Stage],
    global: &[(String, String)],
    automatic: &[(String, String)],
    escape: char,
) -> Result<Vec<String>, PlanError> {
    stages
        .iter()
        .map(|stage| {
            let lookup = |k: &str| {
                global
                    .iter()
                    .chain(automatic)
                    .rev()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.as_str())
            };
            Lexer::new(escape)
                .process_word(&stage.from.image, &lookup)
                .map(|w| w.value)
                .map_err(|e| PlanError {
                    step: Box::new(stage.from_step.clone()),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// `FROM --platform=`, expanded with the global ARGs, must name a
/// platform, and (until multi-platform builds exist) this machine's.
pub fn check_platform(
    raw: &str,
    global: &[(String, String)],
    automatic: &[(String, String)],
    escape: char,
) -> Result<(), String> {
    let scope: Vec<&(String, String)> = global.iter().chain(automatic).collect();
    let lookup = |k: &str| {
        scope
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let expansion = Lexer::new(escape)
        .process_word(raw, &lookup)
        .map_err(|e| e.to_string())?;
    let value = expansion.value;
    if value.is_empty() {
        let names: Vec<&str> = scope.iter().map(|(n, _)| n.as_str()).collect();
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
    let host = format!("linux/{}", config::host_architecture());
    if parts[..2].join("/") != host {
        return Err(format!(
            "FROM --platform={value}: kiln builds for this machine's platform ({host}) only"
        ));
    }
    Ok(())
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
                let lower = from.to_lowercase();
                let earlier = stages[..i]
                    .iter()
                    .any(|s| s.from.name.as_deref() == Some(lower.as_str()));
                let later = stages[i..]
                    .iter()
                    .any(|s| s.from.name.as_deref() == Some(lower.as_str()));
                if later && !earlier {
                    let current = stage
                        .from
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("stage-{i}"));
                    return Err(PlanError {
                        step: Box::new(step.clone()),
                        message: format!(
                            "cannot copy from stage {from:?}, it needs to be defined before current stage {current:?}"
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The earlier stages stage `i` reads: its FROM, `COPY --from` and
/// `RUN --mount=from=`.
pub fn stage_deps(stages: &[Stage], bases: &[String], i: usize) -> Vec<usize> {
    let find = |name: &str| -> Option<usize> {
        let lower = name.to_lowercase();
        stages[..i]
            .iter()
            .position(|s| s.from.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().filter(|&n| n < i))
    };
    let base = from_stage(stages, bases, i);
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
    let lower = bases[i].to_lowercase();
    // The latest stage of that name before this one (names may repeat).
    stages[..i]
        .iter()
        .rposition(|s| s.from.name.as_deref() == Some(lower.as_str()))
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
        let global: Vec<(String, String)> = global
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let bases = bases(&stages, &global, &[], '\\').unwrap();
        let deps = (0..stages.len())
            .map(|i| stage_deps(&stages, &bases, i))
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
        let e = check_stage_order(&s).unwrap_err();
        assert_eq!(
            e.message,
            "cannot copy from stage \"build\", it needs to be defined before current stage \"first\""
        );
        assert_eq!(e.step.line, 2);
        assert!(
            check_stage_order(&stages(
                "FROM a AS build\nFROM a\nCOPY --from=build /x /x\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn platform_values_are_checked_as_buildkit_does() {
        let auto = vec![(
            "BUILDPLATFORM".to_string(),
            format!("linux/{}", config::host_architecture()),
        )];
        assert!(check_platform("$BUILDPLATFORM", &[], &auto, '\\').is_ok());
        assert_eq!(
            check_platform("$BULIDPLATFORM", &[], &auto, '\\').unwrap_err(),
            "empty platform value from expression $BULIDPLATFORM (did you mean BUILDPLATFORM?)"
        );
        assert!(
            check_platform("linux/${MYARCH}", &[], &auto, '\\')
                .unwrap_err()
                .starts_with("failed to parse platform linux/${MYARCH}")
        );
        assert!(
            check_platform("windows/amd64", &[], &auto, '\\')
                .unwrap_err()
                .contains("this machine's platform")
        );
    }
}
