//! Resource limits through cgroups, v1 (one hierarchy per controller) or v2
//! (unified). A container's groups are removed after it exits.

use super::spec::Limits;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// The cgroups of one container.
#[derive(Debug, Default)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    fs::write(dir.join(file), value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value} to {}: {e}", dir.join(file).display()),
        )
    })
}

/// True on a cgroup v2 (unified) machine.
fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

impl Cgroup {
    /// Creates the groups for container `id` with `limits` and moves `pid`
    /// into them. No limits, no groups.
    pub fn create(id: &str, limits: &Limits, pid: u32) -> io::Result<Cgroup> {
        let mut cg = Cgroup::default();
        if limits.memory.is_none() && limits.cpus.is_none() && limits.pids.is_none() {
            return Ok(cg);
        }
        let result = if unified() {
            cg.create_v2(id, limits, pid)
        } else {
            cg.create_v1(id, limits, pid)
        };
        if let Err(e) = result {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn create_v1(&mut self, id: &str, limits: &Limits, pid: u32) -> io::Result<()> {
        let mut wanted: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
        if let Some(mem) = limits.memory {
            wanted.push((
                "memory",
                vec![
                    ("memory.limit_in_bytes", mem.to_string()),
                    ("memory.memsw.limit_in_bytes", mem.to_string()),
                ],
            ));
        }
        if let Some(cpus) = limits.cpus {
            let quota = (cpus * 100_000.0).round() as u64;
            wanted.push((
                "cpu",
                vec![
                    ("cpu.cfs_period_us", "100000".into()),
                    ("cpu.cfs_quota_us", quota.to_string()),
                ],
            ));
        }
        if let Some(pids) = limits.pids {
            wanted.push(("pids", vec![("pids.max", pids.to_string())]));
        }
        for (controller, files) in wanted {
            let dir = Path::new(ROOT).join(controller).join("kiln").join(id);
            fs::create_dir_all(&dir)?;
            self.dirs.push(dir.clone());
            for (file, value) in files {
                // Without swap accounting there is no memsw file: no swap to limit.
                if file.starts_with("memory.memsw") && !dir.join(file).exists() {
                    continue;
                }
                write(&dir, file, &value)?;
            }
            write(&dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    fn create_v2(&mut self, id: &str, limits: &Limits, pid: u32) -> io::Result<()> {
        let parent = Path::new(ROOT).join("kiln");
        fs::create_dir_all(&parent)?;
        let _ = write(
            Path::new(ROOT),
            "cgroup.subtree_control",
            "+memory +pids +cpu",
        );
        let _ = write(&parent, "cgroup.subtree_control", "+memory +pids +cpu");
        let dir = parent.join(id);
        fs::create_dir_all(&dir)?;
        self.dirs.push(dir.clone());
        if let Some(mem) = limits.memory {
            write(&dir, "memory.max", &mem.to_string())?;
            let _ = write(&dir, "memory.swap.max", "0");
        }
        if let Some(cpus) = limits.cpus {
            write(
                &dir,
                "cpu.max",
                &format!("{} 100000", (cpus * 100_000.0).round() as u64),
            )?;
        }
        if let Some(pids) = limits.pids {
            write(&dir, "pids.max", &pids.to_string())?;
        }
        write(&dir, "cgroup.procs", &pid.to_string())
    }

    /// Removes the groups (they are empty once the container has exited).
    pub fn remove(&mut self) {
        for dir in self.dirs.drain(..) {
            for _ in 0..50 {
                if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.remove();
    }
}
