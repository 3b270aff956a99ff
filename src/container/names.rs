//! Names for containers that were not given one, as docker makes them:
//! an adjective and a famous scientist or hacker (`eager_curie`).

const LEFT: [&str; 24] = [
    "admiring",
    "brave",
    "clever",
    "dazzling",
    "eager",
    "focused",
    "gallant",
    "happy",
    "inspiring",
    "jolly",
    "keen",
    "loving",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "sharp",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "zealous",
];

const RIGHT: [&str; 24] = [
    "agnesi",
    "babbage",
    "curie",
    "dijkstra",
    "euler",
    "feynman",
    "goldberg",
    "hopper",
    "hypatia",
    "jepsen",
    "knuth",
    "lovelace",
    "meitner",
    "noether",
    "pike",
    "ritchie",
    "shannon",
    "thompson",
    "torvalds",
    "turing",
    "wozniak",
    "yalow",
    "zhukovsky",
    "lamarr",
];

/// A name none of `taken` is: a random pair, with a number after it when
/// the pairs run out.
pub fn unused(taken: &[&str]) -> String {
    let mut bytes = [0u8; 2];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    let (mut a, mut b) = (
        bytes[0] as usize % LEFT.len(),
        bytes[1] as usize % RIGHT.len(),
    );
    for n in 0.. {
        let name = match n / (LEFT.len() * RIGHT.len()) {
            0 => format!("{}_{}", LEFT[a], RIGHT[b]),
            k => format!("{}_{}{k}", LEFT[a], RIGHT[b]),
        };
        if !taken.contains(&name.as_str()) {
            return name;
        }
        b = (b + 1) % RIGHT.len();
        if b == 0 {
            a = (a + 1) % LEFT.len();
        }
    }
    unreachable!("a name is found before the numbers run out")
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_fresh() {
        let first = super::unused(&[]);
        assert!(first.contains('_'));
        assert_ne!(super::unused(&[&first]), first);
    }
}
