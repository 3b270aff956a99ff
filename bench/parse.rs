//! Parser benchmark: a generated 10,000-instruction Dockerfile with the mix
//! real files have (RUN with continuations and comments, COPY/ADD with flags,
//! ENV/LABEL/ARG words, heredocs, exec forms), through each layer.
//!
//! `cargo bench --bench parse` prints the minimum and median of 20 runs per
//! layer, and throughput at the minimum.

use kiln::dockerfile::{Source, dump, instructions, lint, parse};
use std::hint::black_box;
use std::time::{Duration, Instant};

const INSTRUCTIONS: usize = 10_000;
const RUNS: usize = 20;

fn generate() -> String {
    let mut out = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\n");
    let mut count = 1;
    let mut stage = 0;
    while count < INSTRUCTIONS {
        let i = count;
        let text = match (i - 1) % 12 {
            0 => {
                stage += 1;
                format!("FROM --platform=$BUILDPLATFORM $BASE AS stage{stage}\n")
            }
            1 => format!(
                "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n    apt-get update && \\\n    # tools for step {i}\n    apt-get install -y --no-install-recommends curl ca-certificates git-{i} && \\\n    rm -rf /var/lib/apt/lists/*\n"
            ),
            2 => format!("COPY --chown=app:app --chmod=0644 --link src/{i}/ /app/src/{i}/\n"),
            3 => format!("ENV PATH=/opt/{i}/bin:$PATH LANG=C.UTF-8 MSG=\"step {i} of many\"\n"),
            4 => format!("LABEL org.opencontainers.image.revision=\"{i}\" com.example.step={i}\n"),
            5 => format!("ARG VERSION_{i}=1.2.{i}\n"),
            6 => format!("WORKDIR /app/{i}\n"),
            7 => format!("COPY <<EOF /etc/app/{i}.conf\nkey={i}\nname=\"value {i}\"\nEOF\n"),
            8 => format!("CMD [\"/app/bin/server\", \"--port\", \"{i}\"]\n"),
            9 => format!(
                "HEALTHCHECK --interval=30s --timeout=3s CMD curl -f http://localhost:{i}/ || exit 1\n"
            ),
            10 => format!(
                "ADD --checksum=sha256:{:064x} https://example.com/{i}.tar.gz /opt/\n",
                i
            ),
            _ => format!("USER {i}:{i}\n"),
        };
        out.push_str(&text);
        count += 1;
    }
    out
}

fn time(label: &str, bytes: usize, mut f: impl FnMut()) {
    f();
    let samples: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    let mut sorted = samples;
    sorted.sort();
    let (min, median) = (sorted[0], sorted[sorted.len() / 2]);
    // The minimum is the least disturbed by other load on a shared machine.
    let mbps = bytes as f64 / min.as_secs_f64() / 1e6;
    let per_sec = INSTRUCTIONS as f64 / min.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<32} min {:>7.2} ms  median {:>7.2} ms  {mbps:>6.1} MB/s  {per_sec:>8.0} instructions/s",
        ms(min),
        ms(median)
    );
}

fn main() {
    let text = generate();
    let bytes = text.len();
    println!(
        "input: {INSTRUCTIONS} instructions, {} lines, {bytes} bytes; {RUNS} runs each",
        text.lines().count()
    );
    let source = Source::new("Dockerfile", text.as_bytes());
    let ast = parse(&source).expect("generated Dockerfile parses");
    assert_eq!(ast.nodes.len(), INSTRUCTIONS);
    let (_, errors) = instructions::typed(&ast);
    assert!(
        errors.is_empty(),
        "generated Dockerfile has errors: {errors:?}"
    );

    time("syntax (kiln parse)", bytes, || {
        black_box(parse(&Source::new("Dockerfile", text.as_bytes())).expect("parses"));
    });
    time("syntax + dump", bytes, || {
        let ast = parse(&Source::new("Dockerfile", text.as_bytes())).expect("parses");
        black_box(dump::dump(&ast));
    });
    time("syntax + typed + lint (check)", bytes, || {
        let ast = parse(&Source::new("Dockerfile", text.as_bytes())).expect("parses");
        black_box(instructions::typed(&ast));
        black_box(lint::lint(&ast));
    });
}
