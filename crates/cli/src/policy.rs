//! `arqon policy`: read, check and reload the live CASIL policy through the policy
//! service's gRPC API (with the service token).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use arqon_proto::grpc::{Bearer, ServiceToken, error_code};
use arqon_proto::policy::v1 as pb;
use arqon_proto::policy::v1::policy_client::PolicyClient;

#[derive(Debug, clap::Args)]
pub(crate) struct PolicyArgs {
    /// The policy service's gRPC API (`--url` is an older name for it).
    #[arg(
        long = "grpc-url",
        visible_alias = "url",
        env = "ARQONBUS_POLICY_URL",
        default_value = "http://127.0.0.1:9200"
    )]
    grpc_url: String,
    /// The service token the API expects.
    #[arg(long, env = "ARQONBUS_SERVICE_TOKEN", hide_env_values = true)]
    token: String,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Prints the live policy document (JSON) with its version.
    Get,
    /// Checks a policy document (YAML or JSON) without applying it.
    Validate {
        /// The document.
        file: PathBuf,
    },
    /// Replaces the live policy on every policy replica.
    Reload {
        /// A whole policy document (YAML or JSON).
        #[arg(long, conflicts_with = "changes", required_unless_present = "changes")]
        file: Option<PathBuf>,
        /// Settings to change, as `op.casil.reload` takes them: a JSON object, e.g.
        /// '{"mode":"enforce"}'.
        #[arg(long)]
        changes: Option<String>,
        /// Only if this version is live.
        #[arg(long)]
        expected_version: Option<u64>,
        /// Recorded as who made the new version.
        #[arg(long, default_value = "arqon-cli")]
        actor: String,
    },
}

type Client = PolicyClient<InterceptedService<Channel, Bearer>>;

fn client(args: &PolicyArgs) -> anyhow::Result<Client> {
    let bearer = Bearer::new(&ServiceToken::new(args.token.clone()))
        .map_err(|e| anyhow::anyhow!("the service token cannot be used: {e}"))?;
    let endpoint = Endpoint::from_shared(args.grpc_url.clone())
        .with_context(|| format!("{:?} is not a URL", args.grpc_url))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15));
    Ok(PolicyClient::with_interceptor(
        endpoint.connect_lazy(),
        bearer,
    ))
}

fn read(file: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

fn refused(status: tonic::Status) -> anyhow::Error {
    match error_code(&status) {
        Some(code) => anyhow::anyhow!("{code}: {}", status.message()),
        None => anyhow::anyhow!("{:?}: {}", status.code(), status.message()),
    }
}

fn print_snapshot(snapshot: &pb::PolicySnapshot) {
    println!(
        "# version {} (stored {} by {})",
        snapshot.version, snapshot.updated_at, snapshot.updated_by
    );
    println!("{}", snapshot.document_json);
}

pub(crate) async fn run(args: PolicyArgs) -> anyhow::Result<()> {
    let mut client = client(&args)?;
    match args.action {
        Action::Get => {
            let live = client.get_policy(pb::GetPolicyRequest {}).await;
            print_snapshot(&live.map_err(refused)?.into_inner());
        }
        Action::Validate { file } => {
            let candidate = Some(pb::Candidate {
                source: Some(pb::candidate::Source::Document(read(&file)?)),
            });
            let checked = client
                .validate_policy(pb::ValidatePolicyRequest { candidate })
                .await
                .map_err(refused)?
                .into_inner();
            if !checked.valid {
                bail!("invalid policy: {}", checked.problems.join("; "));
            }
            println!("valid");
        }
        Action::Reload {
            file,
            changes,
            expected_version,
            actor,
        } => {
            let source = match (file, changes) {
                (Some(file), _) => pb::candidate::Source::Document(read(&file)?),
                (None, Some(changes)) => pb::candidate::Source::ChangesJson(changes),
                (None, None) => bail!("give --file or --changes"),
            };
            let reloaded = client
                .reload_policy(pb::ReloadPolicyRequest {
                    candidate: Some(pb::Candidate {
                        source: Some(source),
                    }),
                    expected_version,
                    actor,
                })
                .await
                .map_err(refused)?
                .into_inner();
            print_snapshot(&reloaded);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    #[test]
    fn the_grpc_api_is_named_like_the_other_targets_and_the_old_name_still_works() {
        for flag in ["--grpc-url", "--url"] {
            let cli =
                Cli::try_parse_from(["arqon", flag, "http://policy:9200", "--token", "t", "get"])
                    .unwrap_or_else(|e| panic!("{flag}: {e}"));
            assert_eq!(cli.policy.grpc_url, "http://policy:9200", "{flag}");
        }
    }
}
