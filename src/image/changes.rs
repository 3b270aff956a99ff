//! `--change` for `kiln import`: Dockerfile instructions that only touch
//! the config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME,
//! WORKDIR, STOPSIGNAL, SHELL, HEALTHCHECK), read by kiln's own front end
//! and expanded with the config's ENV as a Dockerfile would be.

use super::config::{ContainerConfig, Empty, Healthcheck};
use super::{ImageError, Result};
use crate::dockerfile::instructions::{self, Command, Instruction};
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{Source, parse};
use std::collections::BTreeMap;

/// Applies each change, in order, to `config`.
pub fn apply_changes(config: &mut ContainerConfig, changes: &[String]) -> Result<()> {
    for change in changes {
        let bad = |reason: String| ImageError::BadChange {
            change: change.clone(),
            reason,
        };
        let text = format!("FROM scratch\n{change}\n");
        let ast =
            parse(&Source::new("--change", text.as_bytes())).map_err(|e| bad(e.to_string()))?;
        let (file, errors) = instructions::typed(&ast);
        if let Some(e) = errors.first() {
            return Err(bad(e.to_string()));
        }
        let steps = file
            .stages
            .first()
            .map(|s| s.steps.as_slice())
            .unwrap_or_default();
        for step in steps {
            apply(config, &step.instruction).map_err(bad)?;
        }
    }
    Ok(())
}

fn command(c: &Command, shell: &[String]) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => shell.iter().cloned().chain([s.clone()]).collect(),
    }
}

/// Applies one config-only instruction; the error says why it cannot be.
pub fn apply(config: &mut ContainerConfig, instruction: &Instruction) -> Result<(), String> {
    apply_with(config, instruction, &[], '\\')
}

/// [`apply`], expanding words with the config's ENV and then `args` (the
/// build's ARG values in scope; ENV wins, as in a Dockerfile), with the
/// Dockerfile's escape token.
pub fn apply_with(
    config: &mut ContainerConfig,
    instruction: &Instruction,
    args: &[(String, String)],
    escape: char,
) -> Result<(), String> {
    let env: Vec<(String, String)> = config
        .env
        .iter()
        .flatten()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .chain(args.iter().rev())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let lexer = Lexer::new(escape);
    let expand = |word: &str| {
        lexer
            .process_word(word, &lookup)
            .map(|e| e.value)
            .map_err(|e| e.to_string())
    };
    let shell = config
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
    match instruction {
        Instruction::Cmd(c) => config.cmd = Some(command(c, &shell)),
        Instruction::Entrypoint(c) => config.entrypoint = Some(command(c, &shell)),
        Instruction::Shell(s) => config.shell = Some(s.clone()),
        Instruction::Env(pairs) => {
            for kv in pairs {
                let key = expand(&kv.key)?;
                let value = expand(&kv.value)?;
                let list = config.env.get_or_insert_with(Vec::new);
                let entry = format!("{key}={value}");
                // An existing key keeps its place, as BuildKit does.
                match list
                    .iter_mut()
                    .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
                {
                    Some(slot) => *slot = entry,
                    None => list.push(entry),
                }
            }
        }
        Instruction::Label(pairs) => {
            for kv in pairs {
                let labels = config.labels.get_or_insert_with(BTreeMap::new);
                labels.insert(expand(&kv.key)?, expand(&kv.value)?);
            }
        }
        Instruction::Expose(ports) => {
            // Expanded, then split: `EXPOSE $PORTS` with "80 443/udp"
            // is two ports, as BuildKit makes it.
            let words = ports
                .iter()
                .map(|p| lexer.process_words(p, &lookup).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            for port in exposed(&words.concat())? {
                config
                    .exposed_ports
                    .get_or_insert_with(BTreeMap::new)
                    .insert(port, Empty {});
            }
        }
        Instruction::Volume(vols) => {
            for v in vols {
                config
                    .volumes
                    .get_or_insert_with(BTreeMap::new)
                    .insert(expand(v)?, Empty {});
            }
        }
        Instruction::User(u) => config.user = Some(expand(u)?),
        Instruction::Workdir(w) => {
            let w = expand(w)?;
            let base = config.working_dir.clone().unwrap_or_else(|| "/".into());
            let joined = if w.starts_with('/') {
                w
            } else {
                format!("{}/{w}", base.trim_end_matches('/'))
            };
            // Cleaned as Go's filepath.Join cleans it: no `.`, `..` or `//`.
            let mut parts: Vec<&str> = Vec::new();
            for part in joined.split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        parts.pop();
                    }
                    p => parts.push(p),
                }
            }
            config.working_dir = Some(format!("/{}", parts.join("/")));
        }
        Instruction::StopSignal(s) => config.stop_signal = Some(expand(s)?),
        Instruction::Onbuild(_, text) => config
            .on_build
            .get_or_insert_with(Vec::new)
            .push(text.clone()),
        Instruction::Healthcheck(h) => {
            config.healthcheck = Some(match h {
                instructions::Healthcheck::None => Healthcheck {
                    test: vec!["NONE".into()],
                    ..Default::default()
                },
                instructions::Healthcheck::Cmd {
                    command,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => {
                    let nanos = |d: &Option<std::time::Duration>| {
                        d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                    };
                    let test = match command {
                        Command::Exec(v) => std::iter::once("CMD".to_string())
                            .chain(v.iter().cloned())
                            .collect(),
                        Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                    };
                    Healthcheck {
                        test,
                        interval: nanos(interval),
                        timeout: nanos(timeout),
                        start_period: nanos(start_period),
                        start_interval: nanos(start_interval),
                        retries: retries.map(i64::from),
                    }
                }
            })
        }
        other => {
            let name = format!("{other:?}");
            let name = name
                .split(['(', ' '])
                .next()
                .unwrap_or_default()
                .to_uppercase();
            return Err(format!(
                "{name} changes the filesystem; only config instructions may be given as changes"
            ));
        }
    }
    Ok(())
}

/// The ports of EXPOSE's expanded words, in their order (the typed layer
/// sorted the words as written, as BuildKit's parser does).
pub fn exposed(words: &[String]) -> Result<Vec<String>, String> {
    let mut ports = Vec::new();
    for w in words {
        ports.extend(crate::dockerfile::instructions::expose_ports(w)?);
    }
    Ok(ports)
}
