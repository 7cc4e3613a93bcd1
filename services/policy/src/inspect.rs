//! One inbound envelope through CASIL: forwarded (unchanged, or redacted and annotated),
//! or blocked with one error back to its sender. What is inspected of an envelope, and
//! whether the policy applies to it at all, is `arqon_casil`'s (`Engine::inspect_envelope`,
//! the same rule the edge asks before letting an envelope skip this stage).

use std::time::Instant;

use bytes::Bytes;
use tracing::{Instrument as _, info, warn};

use arqon_bus::{Headers, Message};
use arqon_casil::{Decision, Inspection, Outcome, Part, decision_event};
use arqon_proto::model::{EdgeDelivery, Inbound};
use arqon_protocol::{Envelope, ErrorCode, JsonObject, TenantId, subject};
use arqon_telemetry::traces;

use crate::Context;
use crate::metrics::DecisionLabels;

/// The span of one inspection, continuing the trace context `header` gives.
pub(crate) fn span<'a>(header: impl Fn(&str) -> Option<&'a str>) -> tracing::Span {
    traces::continue_span(header, || {
        tracing::debug_span!(
            "policy.inspect",
            otel.kind = "consumer",
            messaging.system = "arqonbus",
            messaging.operation = "process",
            arqonbus.tenant = tracing::field::Empty,
            arqonbus.casil.mode = tracing::field::Empty,
            arqonbus.casil.decision = tracing::field::Empty,
            arqonbus.casil.reason = tracing::field::Empty,
            arqonbus.casil.flags = tracing::field::Empty,
        )
    })
}

pub(crate) async fn handle(context: &Context, message: Message) {
    let span = span(|key| message.headers.get(key));
    inspect_in(context, message, &span)
        .instrument(span.clone())
        .await;
}

async fn inspect_in(context: &Context, message: Message, span: &tracing::Span) {
    let metrics = &context.metrics;
    let mut inbound = match Inbound::decode(message.payload.clone()) {
        Ok(inbound) => inbound,
        Err(e) => {
            metrics.rejected.inc();
            warn!(subject = %message.subject, error = %e, "undecodable inbound envelope");
            return;
        }
    };
    if subject::tenant_of(&message.subject).as_ref() != Some(&inbound.identity.tenant) {
        metrics.rejected.inc();
        warn!(subject = %message.subject, tenant = %inbound.identity.tenant, "tenant does not match the subject");
        return;
    }
    let sender = Sender {
        tenant: &inbound.identity.tenant,
        client_id: inbound.identity.client_id.as_str(),
    };
    let (outcome, changed) = decide(context, &sender, &mut inbound.envelope, span).await;
    if outcome.decision == Decision::Block {
        block(context, &inbound, &outcome).await;
        return;
    }
    let forward = if changed.any() {
        // The sender's edge acknowledges what it sent unless told the payload changed.
        inbound.payload_rewritten = changed.payload;
        inbound.encode()
    } else {
        // Unchanged envelopes go on as they came: the bytes are forwarded, not re-encoded.
        message.payload
    };
    forward_to_dispatcher(context, &message.subject, forward).await;
}

/// Who sent an envelope: a client, or the server itself (its origin in place of a
/// client id).
pub(crate) struct Sender<'a> {
    pub(crate) tenant: &'a TenantId,
    pub(crate) client_id: &'a str,
}

/// Inspects `envelope` under the live policy, counts, traces, logs and publishes the
/// decision as the policy says, and, unless it is blocked, rewrites `envelope` as CASIL
/// changed it (redacted parts, `metadata.casil`). The outcome, and what of `envelope`
/// changed.
pub(crate) async fn decide(
    context: &Context,
    sender: &Sender<'_>,
    envelope: &mut Envelope,
    span: &tracing::Span,
) -> (Outcome, Changed) {
    let metrics = &context.metrics;
    let live = context.store.current();
    let started = Instant::now();
    let Inspection { outcome, redacted } = live.engine.inspect_envelope(envelope);
    metrics.inspection.observe(started.elapsed().as_secs_f64());
    metrics
        .decisions
        .get_or_create(&DecisionLabels {
            decision: outcome.decision.as_str(),
            reason: outcome.reason.as_str(),
        })
        .inc();
    let policy = live.engine.policy();
    if !span.is_disabled() {
        span.record("arqonbus.tenant", sender.tenant.as_str());
        span.record("arqonbus.casil.mode", policy.mode.as_str());
        span.record("arqonbus.casil.decision", outcome.decision.as_str());
        span.record("arqonbus.casil.reason", outcome.reason.as_str());
        if let Some(classification) = &outcome.classification {
            span.record(
                "arqonbus.casil.flags",
                tracing::field::display(classification.flags.to_json()),
            );
        }
    }
    if policy.metadata.to_telemetry && outcome.inspected {
        publish_event(context, sender, envelope, &outcome).await;
    }
    if policy.metadata.to_logs {
        log(sender, envelope, &outcome);
    }
    if outcome.decision == Decision::Block {
        traces::set_error(
            span,
            format!("CASIL blocked the envelope: {}", outcome.reason.as_str()),
        );
        return (outcome, Changed::default());
    }
    let changed = rewrite(envelope, &outcome, redacted);
    (outcome, changed)
}

/// What CASIL changed in an envelope.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Changed {
    /// The payload (redacted).
    pub(crate) payload: bool,
    /// Anything else (args or metadata redacted, `metadata.casil` added).
    pub(crate) other: bool,
}

impl Changed {
    pub(crate) fn any(self) -> bool {
        self.payload || self.other
    }
}

/// Puts into `envelope` what CASIL changed: the redacted parts and `metadata.casil`.
fn rewrite(envelope: &mut Envelope, outcome: &Outcome, redacted: Vec<(Part, String)>) -> Changed {
    let mut changed = Changed {
        payload: false,
        other: outcome.envelope_metadata.is_some(),
    };
    for (part, text) in redacted {
        let Ok(copy) = JsonObject::parse(&text) else {
            continue;
        };
        match part {
            Part::Payload => {
                envelope.payload = copy;
                changed.payload = true;
            }
            Part::Args => {
                envelope.args = copy;
                changed.other = true;
            }
            Part::Metadata => {
                envelope.metadata = copy;
                changed.other = true;
            }
        }
    }
    if let Some(casil) = &outcome.envelope_metadata {
        let mut metadata = envelope.metadata.to_map();
        metadata.insert("casil".to_owned(), casil.clone());
        envelope.metadata = JsonObject::from_map(&metadata);
    }
    changed
}

async fn forward_to_dispatcher(context: &Context, ingress: &str, bytes: Bytes) {
    let Some(tenant) = subject::tenant_of(ingress) else {
        return;
    };
    match context
        .bus
        .publish_with_headers(
            subject::dispatch(&tenant),
            Headers::current_trace_context(),
            bytes,
        )
        .await
    {
        Ok(()) => {
            context.metrics.forwarded.inc();
        }
        Err(e) => {
            context.metrics.publish_errors.inc();
            // The edge tells the client when no answer arrives.
            warn!(error = %e, "forward to dispatcher failed");
        }
    }
}

/// The sender gets one error; nothing else happens to the envelope.
async fn block(context: &Context, inbound: &Inbound, outcome: &Outcome) {
    let reason = outcome
        .reason
        .as_str()
        .parse()
        .unwrap_or(ErrorCode::CasilInternalError);
    let frame = inbound.envelope.casil_blocked(reason);
    let delivery = EdgeDelivery {
        client_id: inbound.identity.client_id.clone(),
        membership: None,
        frames: vec![Bytes::from(frame.to_json())],
        completes: Some(inbound.sequence),
        publish: None,
    };
    let target = subject::edge(&inbound.identity.edge_id);
    if let Err(e) = context
        .bus
        .publish_with_headers(target, Headers::current_trace_context(), delivery.encode())
        .await
    {
        context.metrics.publish_errors.inc();
        warn!(client_id = %inbound.identity.client_id, error = %e, "answer to a blocked sender failed");
    }
}

async fn publish_event(
    context: &Context,
    sender: &Sender<'_>,
    envelope: &Envelope,
    outcome: &Outcome,
) {
    let event = decision_event(
        outcome,
        sender.client_id,
        envelope.id.as_str(),
        envelope.room.as_deref(),
        envelope.channel.as_deref(),
    );
    let target = subject::casil_events(sender.tenant);
    if let Err(e) = context
        .bus
        .publish(target, Bytes::from(event.to_string()))
        .await
    {
        // Telemetry never affects the message.
        context.metrics.publish_errors.inc();
        warn!(error = %e, "CASIL decision event not published");
    }
}

/// Blocks at warning, redactions at info: ids and the reason, never a payload.
fn log(sender: &Sender<'_>, envelope: &Envelope, outcome: &Outcome) {
    let (id, client_id) = (envelope.id.as_str(), sender.client_id);
    let (room, channel) = (envelope.room.as_deref(), envelope.channel.as_deref());
    let reason = outcome.reason.as_str();
    match outcome.decision {
        Decision::Block => {
            warn!(
                message_id = id,
                client_id, room, channel, reason, "CASIL blocked an envelope"
            );
        }
        Decision::AllowWithRedaction => {
            info!(
                message_id = id,
                client_id, room, channel, reason, "CASIL redacted an envelope"
            );
        }
        Decision::Allow => {}
    }
}
