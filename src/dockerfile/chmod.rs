//! `--chmod` of COPY and ADD: parsed here once, so `kiln check` and
//! `kiln build` accept the same values; applied per file by the copier.

/// A parsed `--chmod`: octal, or symbolic as chmod(1) without a umask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// `0755`.
    Octal(u32),
    /// `u+x,go-w`: one (who mask, operator, permission) per operation.
    Symbolic(Vec<(u32, char, Perms)>),
}

/// What one symbolic operation sets, adds or removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Perms {
    /// Letters from `rwxXst`.
    Letters(String),
    /// The permissions another class has now (`g=u`).
    Copy(char),
}

impl Chmod {
    /// Parses `--chmod`'s value as chmod(1) does (no umask: an empty "who"
    /// means all). A clause may hold several operations (`u+x-w`).
    pub fn parse(text: &str) -> Result<Chmod, String> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return u32::from_str_radix(text, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Chmod::Octal)
                .ok_or_else(|| {
                    format!(
                        "invalid chmod parameter: '{text}'. it should be octal string and between 0 and 07777"
                    )
                });
        }
        let bad = |why: String| format!("invalid chmod {text:?}: {why}");
        let mut ops = Vec::new();
        for clause in text.split(',') {
            let op_at = clause
                .find(['+', '-', '='])
                .ok_or_else(|| bad(format!("{clause:?} has no +, - or =")))?;
            let (who, mut rest) = clause.split_at(op_at);
            let mut mask = 0;
            for c in who.chars() {
                mask |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(bad(format!("unknown class {c:?}"))),
                };
            }
            if mask == 0 {
                mask = 0o7777;
            }
            while let Some(op) = rest.chars().next() {
                let body = &rest[1..];
                let end = body.find(['+', '-', '=']).unwrap_or(body.len());
                let perms = &body[..end];
                let perms = match perms {
                    "u" | "g" | "o" => Perms::Copy(perms.chars().next().unwrap_or('u')),
                    p => match p.chars().find(|c| !"rwxXst".contains(*c)) {
                        Some(c) => return Err(bad(format!("unknown permission {c:?}"))),
                        None => Perms::Letters(p.to_string()),
                    },
                };
                ops.push((mask, op, perms));
                rest = &body[end..];
            }
        }
        Ok(Chmod::Symbolic(ops))
    }

    /// The mode a file (or directory) whose mode is `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let ops = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic(ops) => ops,
        };
        let mut mode = mode & 0o7777;
        for (mask, op, perms) in ops {
            let bits = match perms {
                Perms::Letters(letters) => letters
                    .chars()
                    .map(|p| match p {
                        'r' => 0o444,
                        'w' => 0o222,
                        'x' => 0o111,
                        'X' if is_dir || mode & 0o111 != 0 => 0o111,
                        's' => 0o6000,
                        't' => 0o1000,
                        _ => 0,
                    })
                    .fold(0, |a, b| a | b),
                // The class's rwx, spread to every class.
                Perms::Copy(class) => {
                    let shift = match class {
                        'u' => 6,
                        'g' => 3,
                        _ => 0,
                    };
                    ((mode >> shift) & 0o7) * 0o111
                }
            };
            let bits = bits & mask;
            mode = match op {
                '+' => mode | bits,
                '-' => mode & !bits,
                _ => (mode & !mask) | bits,
            };
        }
        mode
    }
}

#[cfg(test)]
mod tests {
    use super::Chmod;

    #[test]
    fn symbolic_modes_apply_to_each_files_own_mode() {
        let c = Chmod::parse("u+x,g-w,o=").unwrap();
        assert_eq!(c.apply(0o664, false), 0o740);
        let c = Chmod::parse("a+X").unwrap();
        assert_eq!(c.apply(0o644, false), 0o644, "X: files without x stay");
        assert_eq!(c.apply(0o744, false), 0o755);
        assert_eq!(c.apply(0o700, true), 0o711, "X: directories get x");
        assert_eq!(Chmod::parse("=r").unwrap().apply(0o777, false), 0o444);
        assert_eq!(Chmod::parse("u+s,+t").unwrap().apply(0o755, false), 0o5755);
        assert_eq!(Chmod::parse("0755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("u+x-w").unwrap().apply(0o644, false), 0o544);
        assert_eq!(Chmod::parse("g=u").unwrap().apply(0o640, false), 0o660);
        for bad in ["u+q", "k+x", "rwx", "99999", "888", ""] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
    }
}
