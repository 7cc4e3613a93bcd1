//! Single-thread inspections per second on ~1 KB chat messages, next to the least any
//! inspection must cost: parsing the same payload into a `serde_json::Value`.
//!
//! Run with `cargo bench -p arqon-casil --bench inspect`. Each case warms up, then runs
//! for about 1.5 s; the table gives the time per payload and its ratio to the parse.
//! `cargo test --all-targets` runs this binary too, without `--bench` (what `cargo bench`
//! passes): then each case runs once, to show that it still works, and nothing is
//! measured (the measurement took 12 s of a test run and asserted nothing).
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use arqon_casil::{Engine, Input, Kind, Mode, Policy};

const WARM_UP: Duration = Duration::from_millis(300);
const MEASURE: Duration = Duration::from_millis(1_500);

/// A chat message as a client would send it: text with some non-ASCII, a mention list,
/// an attachment, a reply reference and client metadata.
fn message(extra_sentence: &str) -> String {
    let content = format!(
        "Morning all! Quick status on the Q3 migration before the stand-up: the edge nodes in \
         eu-west are on the new build since 06:40 and latency is flat at p99. José is still \
         chasing the flaky reconnect test, looks like a race in the presence sweep when a node \
         drains during a join. {extra_sentence}Björn, can you review the rollout plan in the \
         design doc before lunch? I would like to start the us-east canary at 14:00 if nothing \
         else comes up. Also, the dashboard for history replay is live now, links are in the \
         channel topic \u{1F680}. Thanks!"
    );
    let value = serde_json::json!({
        "content": content,
        "format": "markdown",
        "mentions": ["u_7f3a91c2", "u_0b44e7d1"],
        "reply_to": "arq_1732612345678901234_17_c0ffee",
        "attachments": [{
            "name": "q3-rollout-plan.pdf",
            "mime": "application/pdf",
            "size": 482_113,
            "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        }],
        "client": {"app": "arqon-web", "version": "2.14.1", "locale": "en-GB", "tz": "Europe/London"},
        "sent_at": "2026-11-26T08:12:45.123Z"
    });
    serde_json::to_string(&value).expect("a json! value serializes")
}

/// 32 custom patterns of the kind a data-loss policy carries: personal data, internal
/// markers, more credential shapes, connection strings.
const CUSTOM: [&str; 32] = [
    r"\b\d{3}-\d{2}-\d{4}\b",
    r"\b4\d{3}(?:[ -]?\d{4}){3}\b",
    r"\b5[1-5]\d{2}(?:[ -]?\d{4}){3}\b",
    r"\b3[47]\d{2}[ -]?\d{6}[ -]?\d{5}\b",
    r"\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b",
    r"(?i)\bpassport\s*(?:no|number|#)",
    r"(?i)\bdate of birth\b",
    r"(?i)\bconfidential\b",
    r"(?i)\binternal[- ]only\b",
    r"(?i)\bdo not distribute\b",
    r"(?i)\bprivate[_-]?key\b",
    r"(?i)\bclient[_-]?secret\b",
    r"(?i)\baccess[_-]?key\b",
    r"(?i)\bsession[_-]?id\b",
    r"(?i)\bauth[_-]?code\b",
    r"(?i)\bsecret[_-]?key\b",
    r"AIza[0-9A-Za-z\-_]{35}",
    r"ya29\.[0-9A-Za-z\-_]+",
    r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b",
    r"\bkey-[0-9a-zA-Z]{32}\b",
    r"\bSK[0-9a-fA-F]{32}\b",
    r"\bnpm_[A-Za-z0-9]{36}\b",
    r"\bglpat-[A-Za-z0-9\-_]{20}\b",
    r"\bdop_v1_[a-f0-9]{64}\b",
    r"\bshpat_[a-fA-F0-9]{32}\b",
    r"\bhf_[A-Za-z0-9]{34}\b",
    r"(?i)\bmongodb(?:\+srv)?://[^\s:]+:[^\s@]+@",
    r"(?i)\bpostgres(?:ql)?://[^\s:]+:[^\s@]+@",
    r"(?i)\bmysql://[^\s:]+:[^\s@]+@",
    r"(?i)\bredis://[^\s:]*:[^\s@]+@",
    r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
];

fn enforce(custom: &[&str]) -> Engine {
    let mut policy = Policy {
        enabled: true,
        mode: Mode::Enforce,
        ..Policy::default()
    };
    policy.policies.redaction.patterns = custom.iter().map(|p| p.to_string()).collect();
    Engine::compile(policy).expect("the benchmark policies are valid")
}

/// Nanoseconds per call of `f`, after a warm-up, over about `MEASURE`; or, when not
/// `measuring`, one call and no figure.
fn time(measuring: bool, mut f: impl FnMut()) -> f64 {
    if !measuring {
        f();
        return f64::NAN;
    }
    let start = Instant::now();
    while start.elapsed() < WARM_UP {
        f();
    }
    let mut batch: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        if t.elapsed() >= Duration::from_millis(20) {
            break;
        }
        batch *= 2;
    }
    let (mut calls, start) = (0_u64, Instant::now());
    while start.elapsed() < MEASURE {
        for _ in 0..batch {
            f();
        }
        calls += batch;
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn main() {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let clean = message("");
    let secret = message(
        "Ops: the staging deploy key is AKIAIOSFODNN7EXAMPLE until the rotation on Friday. ",
    );
    let default_policy = enforce(&[]);
    let custom_policy = enforce(&CUSTOM);

    if measuring {
        println!("| payload | case | ns / payload | payloads / s | × parse |");
        println!("|---|---|---:|---:|---:|");
    } else {
        println!("each case runs once; `cargo bench -p arqon-casil --bench inspect` measures");
    }
    for (name, payload) in [("clean", &clean), ("secret", &secret)] {
        let label = format!("{name} ({} B)", payload.len());
        let input = Input {
            kind: Kind::Message,
            room: Some("ops"),
            channel: Some("general"),
            payload,
        };
        let parse = time(measuring, || {
            black_box(serde_json::from_str::<serde_json::Value>(black_box(payload)).ok());
        });
        let cases = [
            ("baseline: serde_json::Value parse", parse),
            (
                "default policy, enforce",
                time(measuring, || {
                    black_box(default_policy.inspect(black_box(&input)));
                }),
            ),
            (
                "32 custom patterns, enforce",
                time(measuring, || {
                    black_box(custom_policy.inspect(black_box(&input)));
                }),
            ),
        ];
        if !measuring {
            continue;
        }
        for (case, ns) in cases {
            println!(
                "| {label} | {case} | {ns:.0} | {:.0} | {:.2} |",
                1e9 / ns,
                ns / parse
            );
        }
    }
}
