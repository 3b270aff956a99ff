//! cgroup v2's device rules: v2 has no `devices.allow`; a program of type
//! BPF_PROG_TYPE_CGROUP_DEVICE attached to the container's group decides
//! each open and mknod of a device node, as runc's and youki's do. The
//! program is made here from docker's rules (`TYPE MAJOR:MINOR ACCESS`,
//! the v1 syntax) by hand: a dozen instructions per rule do not warrant
//! libbpf and a C toolchain (runc emits the same shape with cilium/ebpf's
//! assembler).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One rule: `a` (any), `b` or `c`; a major and minor (None: `*`);
/// the access it allows (r=2, w=4, m=1, as the kernel's BPF_DEVCG_ACC_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// 0 any, 1 block, 2 char (BPF_DEVCG_DEV_*).
    kind: u32,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

impl Rule {
    /// Parses `c 1:3 rwm`, `b *:* m`, `a` (docker's and v1's form).
    pub fn parse(text: &str) -> Result<Rule, String> {
        let bad =
            || format!("device rule {text:?}: expected TYPE MAJOR:MINOR ACCESS, as 'c 1:3 rwm'");
        let mut f = text.split_whitespace();
        let kind = match f.next().ok_or_else(bad)? {
            "a" => 0,
            "b" => 1,
            "c" => 2,
            _ => return Err(bad()),
        };
        // A dev_t holds a 12-bit major and a 20-bit minor.
        let number = |s: &str, max: u32| match s {
            "*" => Ok(None),
            n => match n.parse::<u32>() {
                Ok(v) if v <= max => Ok(Some(v)),
                _ => Err(bad()),
            },
        };
        let (major, minor) = match f.next() {
            None if kind == 0 => (None, None),
            None => return Err(bad()),
            Some(mm) => {
                let (a, b) = mm.split_once(':').ok_or_else(bad)?;
                (number(a, 0xfff)?, number(b, 0xf_ffff)?)
            }
        };
        let access = match f.next() {
            None => 7,
            Some(acc) => acc.chars().try_fold(0, |a, c| match c {
                'm' => Ok(a | 1),
                'r' => Ok(a | 2),
                'w' => Ok(a | 4),
                _ => Err(bad()),
            })?,
        };
        if f.next().is_some() || access == 0 {
            return Err(bad());
        }
        Ok(Rule {
            kind,
            major,
            minor,
            access,
        })
    }
}

/// One eBPF instruction, as `struct bpf_insn` lays it out.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | (dst & 0xf);
    b[2..4].copy_from_slice(&off.to_le_bytes());
    b[4..8].copy_from_slice(&imm.to_le_bytes());
    b
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_W | BPF_MEM
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// The program: an access is allowed when some rule names its type and
/// device and allows all of what is asked (the v1 list after `deny a`);
/// anything else is refused.
pub fn program(rules: &[Rule]) -> Vec<[u8; 8]> {
    // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
    // access_type is (access << 16) | type.
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules {
        let mut block: Vec<(u8, u8, u8, i32)> = Vec::new();
        if r.kind != 0 {
            block.push((JNE_K, 2, 0, r.kind as i32));
        }
        if r.access != 7 {
            // What is asked must be within what the rule allows.
            block.push((MOV_X, 1, 3, 0));
            block.push((AND_K, 1, 0, r.access as i32));
            block.push((JNE_X, 1, 3, 0));
        }
        if let Some(major) = r.major {
            block.push((JNE_K, 4, 0, major as i32));
        }
        if let Some(minor) = r.minor {
            block.push((JNE_K, 5, 0, minor as i32));
        }
        // Each jump skips to the next rule: past the rest of this block
        // and its two-instruction "allow".
        let len = block.len();
        for (i, (code, dst, src, imm)) in block.into_iter().enumerate() {
            let off = match code {
                JNE_K | JNE_X => (len - i - 1 + 2) as i16,
                _ => 0,
            };
            p.push(insn(code, dst, src, off, imm));
        }
        p.push(insn(MOV_K, 0, 0, 0, 1));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: i64 = 5;
const BPF_PROG_ATTACH: i64 = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

fn bpf(cmd: i64, attr: &mut [u8; 128]) -> io::Result<i64> {
    // SAFETY: the kernel reads (and for a load, writes the log pointer's
    // buffer, none here) within the union's size given.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            attr.len() as u32,
        )
    };
    match r {
        r if r < 0 => Err(io::Error::last_os_error()),
        r => Ok(r),
    }
}

/// Loads the program for `rules` and attaches it to the v2 group `dir`.
pub fn attach(dir: &Path, rules: &[Rule]) -> io::Result<()> {
    let insns: Vec<u8> = program(rules).concat();
    let license = c"Apache-2.0";
    let mut attr = [0u8; 128];
    // union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license.
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    attr[4..8].copy_from_slice(&((insns.len() / 8) as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    let prog = bpf(BPF_PROG_LOAD, &mut attr)
        .map_err(|e| io::Error::new(e.kind(), format!("loading the device program: {e}")))?;
    // SAFETY: the kernel just returned this descriptor to this process.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as i32) };
    let group = std::fs::File::open(dir)?;
    let mut attr = [0u8; 128];
    // BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags.
    attr[0..4].copy_from_slice(&(group.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    attr[12..16].copy_from_slice(&BPF_F_ALLOW_MULTI.to_ne_bytes());
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("attaching the device program to {}: {e}", dir.display()),
        )
    })?;
    // The group holds the program now; these descriptors may go.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_as_docker_writes_them() {
        assert_eq!(
            Rule::parse("c 1:3 rwm").unwrap(),
            Rule {
                kind: 2,
                major: Some(1),
                minor: Some(3),
                access: 7
            }
        );
        assert_eq!(
            Rule::parse("b *:* m").unwrap(),
            Rule {
                kind: 1,
                major: None,
                minor: None,
                access: 1
            }
        );
        assert_eq!(Rule::parse("c 136:* rw").unwrap().access, 6);
        assert_eq!(Rule::parse("a").unwrap().kind, 0);
        for bad in [
            "x 1:3 rwm",
            "c 1 rwm",
            "c 1:3 rwx",
            "c a:3 r",
            "c 1:3 r extra",
            "c",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    /// The program run by a tiny interpreter of the instructions it uses:
    /// what the kernel would answer for each access.
    fn allows(rules: &[&str], kind: u32, access: u32, major: u32, minor: u32) -> bool {
        let rules: Vec<Rule> = rules.iter().map(|r| Rule::parse(r).unwrap()).collect();
        let p = program(&rules);
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (code, dst, src) = (i[0], (i[1] & 0xf) as usize, (i[1] >> 4) as usize);
            let off = i16::from_le_bytes([i[2], i[3]]) as isize;
            let imm = i32::from_le_bytes([i[4], i[5], i[6], i[7]]) as i64 as u64;
            pc += 1;
            match code {
                LDX_W => r[dst] = u64::from(ctx[off as usize / 4]),
                AND_K => r[dst] &= imm,
                RSH_K => r[dst] >>= imm,
                MOV_X => r[dst] = r[src],
                MOV_K => r[dst] = imm,
                JNE_K if r[dst] != imm => pc = (pc as isize + off) as usize,
                JNE_X if r[dst] != r[src] => pc = (pc as isize + off) as usize,
                JNE_K | JNE_X => {}
                EXIT => return r[0] == 1,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_program_allows_what_the_rules_allow_and_nothing_else() {
        let docker = [
            "c *:* m",
            "b *:* m",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 5:0 rwm",
            "c 136:* rwm",
        ];
        // /dev/null read and write; any char or block node made.
        assert!(allows(&docker, 2, 2 | 4, 1, 3));
        assert!(allows(&docker, 2, 1, 10, 200));
        assert!(allows(&docker, 1, 1, 8, 0));
        assert!(allows(&docker, 2, 2, 136, 7));
        // /dev/kmsg (1:11) and a disk (8:0) opened: refused.
        assert!(!allows(&docker, 2, 2, 1, 11));
        assert!(!allows(&docker, 1, 2, 8, 0));
        // A block device 1:3 is not the char device 1:3.
        assert!(!allows(&docker, 1, 2, 1, 3));
        // Read allowed does not allow write.
        assert!(allows(&["c 1:11 r"], 2, 2, 1, 11));
        assert!(!allows(&["c 1:11 r"], 2, 4, 1, 11));
        assert!(!allows(&["c 1:11 r"], 2, 2 | 4, 1, 11));
        // `a` allows everything; no rule, nothing.
        assert!(allows(&["a"], 1, 7, 8, 0));
        assert!(!allows(&[], 2, 2, 1, 3));
    }
}
