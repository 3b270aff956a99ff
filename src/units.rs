//! Sizes as docker reads them (go-units), one parser per unit system:
//! [`ram_in_bytes`] (binary, 1k = 1024: memory, swap, shm, tmpfs and log
//! sizes, a RUN's tmpfs mount, the build cache's `--keep-storage`) and
//! [`human_size`] (decimal KB = 1000 and binary KiB = 1024: kiln's own
//! config files). Every size kiln takes goes through one of the two.

/// Splits `12.5 MiB` into the number and the unit's letters, lower case.
fn split(text: &str) -> Option<(f64, String)> {
    let t = text.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let n: f64 = num.parse().ok().filter(|n: &f64| n.is_finite())?;
    Some((n, unit.trim().to_ascii_lowercase()))
}

fn scaled(n: f64, scale: u64) -> Option<u64> {
    let bytes = n * scale as f64;
    (bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Docker's RAMInBytes: a number with an optional `k`, `m`, `g`, `t` or
/// `p` (powers of 1024), each with an optional `i` and `b` (`64m`, `1.5GiB`,
/// `512kb`, `100b`, `4096`).
pub fn ram_in_bytes(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid size {text:?}: use a number with an optional k, m, g or t, such as 64m")
    };
    let (n, unit) = split(text).ok_or_else(bad)?;
    let letter = unit
        .strip_suffix('b')
        .unwrap_or(&unit)
        .strip_suffix('i')
        .unwrap_or_else(|| unit.strip_suffix('b').unwrap_or(&unit));
    let power = match letter {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(bad()),
    };
    scaled(n, 1u64 << (10 * power)).ok_or_else(bad)
}

/// A human size: bytes, `KB`/`MB`/`GB`/`TB` (powers of 1000, `k`, `m`,
/// `g`, `t` too) or `KiB`..`TiB` (powers of 1024).
pub fn human_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size {text:?}: use a number with B, KB, MB, GB, TB or KiB..TiB, such as 10GB"
        )
    };
    let (n, unit) = split(text).ok_or_else(bad)?;
    let scale: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    scaled(n, scale).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_sizes_are_binary_as_dockers() {
        for (text, bytes) in [
            ("4096", 4096),
            ("100b", 100),
            ("64m", 64 << 20),
            ("64M", 64 << 20),
            ("512kb", 512 << 10),
            ("1.5GiB", 3 << 29),
            ("2 g", 2 << 30),
            ("1t", 1 << 40),
        ] {
            assert_eq!(ram_in_bytes(text), Ok(bytes), "{text}");
        }
        for bad in ["", "lots", "12x", "-1m", "1.2.3m", "m", "1e3"] {
            assert!(
                ram_in_bytes(bad).unwrap_err().starts_with("invalid size"),
                "{bad}"
            );
        }
        assert!(ram_in_bytes("99999999999p").is_err());
    }

    #[test]
    fn human_sizes_are_decimal_unless_binary() {
        assert_eq!(human_size("10GB"), Ok(10_000_000_000));
        assert_eq!(human_size("1.5m"), Ok(1_500_000));
        assert_eq!(human_size("2GiB"), Ok(2 << 30));
        assert_eq!(human_size("512"), Ok(512));
        assert!(human_size("5 parsecs").is_err());
    }
}
