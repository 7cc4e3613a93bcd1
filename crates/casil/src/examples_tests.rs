//! The example documents in `deploy/policies/` load and compile, and do what their
//! comments say. Read at build time, so the crate itself stays free of I/O.

use crate::test_support::message;
use crate::{Decision, Engine, Mode, Policy, REDACTED, Reason};

const MONITOR: &str = include_str!("../../../deploy/policies/monitor.yaml");
const ENFORCE_SECRETS: &str = include_str!("../../../deploy/policies/enforce-secrets.yaml");
const SCOPED: &str = include_str!("../../../deploy/policies/scoped.yaml");

fn compile(name: &str, text: &str) -> Engine {
    let policy = Policy::from_yaml(text).unwrap_or_else(|err| panic!("{name}: {err}"));
    Engine::compile(policy).unwrap_or_else(|err| panic!("{name}: {err}"))
}

#[test]
fn every_example_loads_and_compiles() {
    for (name, text) in [
        ("monitor.yaml", MONITOR),
        ("enforce-secrets.yaml", ENFORCE_SECRETS),
        ("scoped.yaml", SCOPED),
    ] {
        assert!(compile(name, text).policy().enabled, "{name}");
    }
}

#[test]
fn monitor_reports_without_blocking() {
    let e = compile("monitor", MONITOR);
    assert_eq!(e.policy().mode, Mode::Monitor);
    let out = e.inspect(&message(Some("r"), None, r#"{"text":"my password is x"}"#));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::AllowWithRedaction, Reason::MonitorMode)
    );
    assert_eq!(out.transport_payload, None);
}

#[test]
fn enforce_secrets_blocks_secrets_and_redacts_paths_in_transport() {
    let e = compile("enforce-secrets", ENFORCE_SECRETS);
    let out = e.inspect(&message(Some("r"), None, r#"{"text":"ssn 123-45-6789"}"#));
    assert_eq!(
        (out.decision, out.reason),
        (Decision::Block, Reason::BlockedSecret)
    );
    let out = e.inspect(&message(Some("r"), None, r#"{"iban":"x","ssn":"on file"}"#));
    assert_eq!(out.decision, Decision::AllowWithRedaction);
    let routed = out.transport_payload.unwrap();
    assert!(
        routed.contains(REDACTED) && !routed.contains("on file"),
        "{routed}"
    );
    assert!(out.envelope_metadata.is_some());
}

#[test]
fn scoped_includes_excludes_and_never_logs() {
    let e = compile("scoped", SCOPED);
    let secret = r#"{"password":"hunter2"}"#;
    assert!(
        e.inspect(&message(Some("secure-ops"), None, secret))
            .inspected
    );
    assert!(
        e.inspect(&message(Some("shop"), Some("payments"), secret))
            .inspected
    );
    assert!(
        !e.inspect(&message(Some("secure-sandbox-1"), None, secret))
            .inspected
    );
    assert!(!e.inspect(&message(Some("lobby"), None, secret)).inspected);
    assert!(!e.inspect(&message(None, None, secret)).inspected);
    let out = e.inspect(&message(Some("hr-1"), Some("x"), secret));
    assert!(!out.inspected);
    assert_eq!(out.observed_payload.as_deref(), Some("\"***REDACTED***\""));
}
