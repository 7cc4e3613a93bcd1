//! No head-of-line blocking across tenants (ADR 016): one tenant's slow commands hold
//! neither another tenant's messages nor its commands, and a tenant over its command cap
//! waits or is refused (`RATE_LIMITED`) while others go on.
//!
//! The slow command is `op.casil.get` (any user may run it) against a policy control API
//! that holds every call until the test releases it: the dispatcher's real command path
//! with a policy service that does not answer yet, so "still in progress" is a fact the
//! test controls, not a matter of time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Map, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status as GrpcStatus};

use arqon_dispatcher::{DispatcherConfig, PolicyControl};
use arqon_e2e::{Cluster, Mode, Topology, WAIT, eventually, metric_value};
use arqon_proto::policy::v1 as pb;
use arqon_proto::policy::v1::policy_server::Policy;
use arqon_protocol::{Envelope, MessageType, Status};
use arqon_sdk::{Client, SdkError};

use crate::each_mode;

each_mode!(
    slow_commands_of_one_tenant_do_not_hold_up_another_tenants_messages,
    a_tenant_over_its_command_cap_waits_or_is_refused_while_others_run,
);

/// A policy control API whose `GetPolicy` calls wait until released.
#[derive(Default)]
struct Gate {
    entered: AtomicUsize,
    finished: AtomicUsize,
    release: CancellationToken,
}

impl Gate {
    fn entered(&self) -> usize {
        self.entered.load(Ordering::SeqCst)
    }

    fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }
}

/// Opens the gate when dropped, so a failed test does not leave calls hanging.
struct Opens(Arc<Gate>);

impl Drop for Opens {
    fn drop(&mut self) {
        self.0.release.cancel();
    }
}

struct HeldPolicy(Arc<Gate>);

#[tonic::async_trait]
impl Policy for HeldPolicy {
    async fn get_policy(
        &self,
        _: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::PolicySnapshot>, GrpcStatus> {
        self.0.entered.fetch_add(1, Ordering::SeqCst);
        self.0.release.cancelled().await;
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(pb::PolicySnapshot {
            version: 1,
            document_json: arqon_casil::Policy::default().to_json(),
            updated_at: "2026-01-01T00:00:00Z".to_owned(),
            updated_by: "settings".to_owned(),
        }))
    }

    async fn validate_policy(
        &self,
        _: Request<pb::ValidatePolicyRequest>,
    ) -> Result<Response<pb::ValidatePolicyResponse>, GrpcStatus> {
        Err(GrpcStatus::unimplemented("not in this test"))
    }

    async fn list_policy_versions(
        &self,
        _: Request<pb::ListPolicyVersionsRequest>,
    ) -> Result<Response<pb::PolicyVersions>, GrpcStatus> {
        Err(GrpcStatus::unimplemented("not in this test"))
    }

    async fn reload_policy(
        &self,
        _: Request<pb::ReloadPolicyRequest>,
    ) -> Result<Response<pb::PolicySnapshot>, GrpcStatus> {
        Err(GrpcStatus::unimplemented("not in this test"))
    }

    async fn inspect(
        &self,
        _: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, GrpcStatus> {
        Err(GrpcStatus::unimplemented("not in this test"))
    }
}

/// A cluster whose dispatcher calls the held policy API for `op.casil.*`.
async fn launch(mode: Mode, dispatcher: DispatcherConfig) -> (Cluster, Arc<Gate>, Opens) {
    let gate = Arc::new(Gate::default());
    let topology = Topology {
        dispatcher: DispatcherConfig {
            policy_control: Some(PolicyControl::in_process(HeldPolicy(Arc::clone(&gate)))),
            // Never called (the control wins); set so that standalone keeps the control
            // above instead of calling its own policy stage.
            policy_url: Some("http://127.0.0.1:9".to_owned()),
            ..dispatcher
        },
        ..Topology::new(mode)
    };
    let cluster = Cluster::launch(topology).await;
    let opens = Opens(Arc::clone(&gate));
    (cluster, gate, opens)
}

/// Starts `op.casil.get` on each client; each task returns its outcome.
fn slow_commands(clients: Vec<Client>) -> Vec<JoinHandle<Result<Envelope, SdkError>>> {
    clients
        .into_iter()
        .map(|client| tokio::spawn(async move { client.command("op.casil.get", Map::new()).await }))
        .collect()
}

async fn clients(cluster: &Cluster, tenant: &str, n: usize) -> Vec<Client> {
    futures_util::future::join_all((0..n).map(|_| cluster.client(tenant))).await
}

fn assert_policy_snapshot(outcome: Result<Envelope, SdkError>) {
    let response = outcome.expect("a response");
    assert_eq!(
        response.status,
        Some(Status::Success),
        "{}",
        response.to_json()
    );
}

async fn finished(handle: JoinHandle<Result<Envelope, SdkError>>) -> Result<Envelope, SdkError> {
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("the command is answered in time")
        .expect("the command's task")
}

/// Tenant A keeps six slow commands running; tenant B's messages are routed, stored,
/// acknowledged and delivered in order meanwhile, and its own commands answered, while
/// every one of A's is provably still in progress. On the previous dispatcher (two
/// receive loops, each handling one envelope at a time) A's first two commands held both
/// loops and B's first message was never acknowledged.
async fn slow_commands_of_one_tenant_do_not_hold_up_another_tenants_messages(mode: Mode) {
    let (cluster, gate, opens) = launch(mode, DispatcherConfig::default()).await;
    let (sender, receiver) = (cluster.client("t-b").await, cluster.client("t-b").await);
    receiver.join("news", "general").await.unwrap();

    let a = slow_commands(clients(&cluster, "t-a", 6).await);
    // Both of the previous dispatcher's loops are busy with A's commands.
    eventually("two of A's slow commands are running", || async {
        gate.entered() >= 2
    })
    .await;

    const MESSAGES: usize = 20;
    for i in 0..MESSAGES {
        sender
            .publish("news", "general", json!({ "n": i }))
            .await
            .unwrap_or_else(|e| {
                panic!("B's message {i} is acknowledged while A's commands run: {e}")
            });
    }
    for i in 0..MESSAGES {
        let delivered = receiver.recv(WAIT).await.expect("B's message delivered");
        assert_eq!(delivered.kind, MessageType::Message);
        assert_eq!(delivered.payload.get("n"), Some(json!(i)), "in order");
    }
    let pong = receiver.command("ping", Map::new()).await.unwrap();
    assert_eq!(pong.status, Some(Status::Success), "{}", pong.to_json());

    // All of that happened while none of A's commands had finished.
    assert_eq!(gate.finished(), 0);
    assert!(a.iter().all(|handle| !handle.is_finished()));
    // And they all run at once, not one after another.
    eventually("all six of A's commands are running", || async {
        gate.entered() == 6
    })
    .await;

    drop(opens);
    for handle in a {
        assert_policy_snapshot(finished(handle).await);
    }
    assert_eq!(gate.finished(), 6);
    cluster.stop().await;
}

/// With two commands per tenant and two more waiting, tenant A's six slow commands
/// become two running, two waiting and two refused at once (`RATE_LIMITED`); tenant B's
/// slow command starts meanwhile in a slot of its own. Once released, every admitted
/// command runs, the waiting ones after the running ones. The previous dispatcher ran
/// A's first two and held everything else, B's command included, behind them.
async fn a_tenant_over_its_command_cap_waits_or_is_refused_while_others_run(mode: Mode) {
    let config = DispatcherConfig {
        max_in_flight_commands: 4,
        max_commands_per_tenant: 2,
        max_queued_commands_per_tenant: 2,
        ..DispatcherConfig::default()
    };
    let (cluster, gate, opens) = launch(mode, config).await;
    let b = cluster.client("t-b").await;
    let mut a = slow_commands(clients(&cluster, "t-a", 6).await);

    eventually("two of A's commands are running", || async {
        gate.entered() == 2
    })
    .await;
    // Two of A's six are refused at once, while the others are held.
    let mut refused = Vec::new();
    eventually("two of A's commands are refused", || async {
        a.iter().filter(|handle| handle.is_finished()).count() >= 2
    })
    .await;
    let mut waiting = Vec::new();
    for handle in a.drain(..) {
        if handle.is_finished() {
            refused.push(finished(handle).await);
        } else {
            waiting.push(handle);
        }
    }
    assert_eq!(
        refused.len(),
        2,
        "only the two beyond A's cap are answered while the gate holds: {refused:?}"
    );
    for outcome in refused {
        match outcome {
            Err(SdkError::Rejected { code, message }) => {
                assert_eq!(code, "RATE_LIMITED", "{message}");
                assert!(
                    message.contains("Too many commands of this tenant"),
                    "{message}"
                );
            }
            other => panic!("expected RATE_LIMITED, got {other:?}"),
        }
    }

    // B's slow command gets a slot of its own while A is over its cap.
    let b_command = tokio::spawn(async move { b.command("op.casil.get", Map::new()).await });
    eventually("B's command is running", || async { gate.entered() == 3 }).await;
    assert_eq!(gate.finished(), 0);

    let metrics = cluster.dispatcher_metrics(0).await;
    let value = |series: &str| metric_value(&metrics, series);
    assert_eq!(
        value(r#"arqonbus_dispatcher_in_flight{lane="commands"}"#),
        Some(3.0)
    );
    assert_eq!(value("arqonbus_dispatcher_queued_commands"), Some(2.0));
    assert_eq!(
        value(r#"arqonbus_dispatcher_command_refusals_total{reason="tenant_queue_full"}"#),
        Some(2.0)
    );

    drop(opens);
    assert_policy_snapshot(finished(b_command).await);
    for handle in waiting {
        assert_policy_snapshot(finished(handle).await);
    }
    assert_eq!(gate.entered(), 5, "A's four admitted commands and B's ran");
    eventually("every command has left its lane", || async {
        let metrics = cluster.dispatcher_metrics(0).await;
        metric_value(
            &metrics,
            r#"arqonbus_dispatcher_in_flight{lane="commands"}"#,
        ) == Some(0.0)
            && metric_value(&metrics, "arqonbus_dispatcher_queued_commands") == Some(0.0)
    })
    .await;
    cluster.stop().await;
}
