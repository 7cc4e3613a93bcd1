//! `list_tenants`: every tenant that has state on the bus, by name, a page at a time, for
//! the system authority (the console's tenant picker). A tenant is listed when it has
//! channels (its counter in the channel registry), a history stream, webhook rules, cron
//! jobs, or open connections; each source is read where it is kept, and in proportion to
//! the tenants it holds (one counter key per tenant, one stream name per tenant; the
//! rules and jobs are bounded per tenant by the operators' limits). Connections are
//! those `status` counts: the first `ARQONBUS_STATUS_MAX_TENANTS` tenants by name.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use arqon_bus::BusError;
use arqon_proto::layout;
use arqon_protocol::{CommandReply, ErrorCode, TenantId, subject};

use super::args::{Arg, Parse, Reader, arg};
use super::{Call, Reply, failed, object};

pub(crate) const AFTER_TENANT: Arg = arg(
    "after",
    false,
    "the `next_after` of the previous page: list the tenants after this name",
);
pub(crate) const TENANTS_LIMIT: Arg = arg(
    "limit",
    false,
    "at most this many (default 100; at most ARQONBUS_STATUS_MAX_TENANTS, 1000 by default)",
);

const DEFAULT_LIMIT: usize = 100;
/// The top of `ARQONBUS_STATUS_MAX_TENANTS`' range; the setting itself is checked when
/// the command runs.
const LIMIT_CEILING: usize = 10_000;

/// `list_tenants`' request: the page.
pub(crate) struct ListTenants {
    after: Option<TenantId>,
    limit: usize,
}

impl Parse for ListTenants {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        let after = match args.string(&AFTER_TENANT)? {
            Some(after) => Some(TenantId::parse(after).map_err(|e| {
                args.refuse(format!(
                    "'after' must be a tenant name from a previous page ({e})"
                ))
            })?),
            None => None,
        };
        let limit = args.limit(&TENANTS_LIMIT, DEFAULT_LIMIT, LIMIT_CEILING)?;
        Ok(Self { after, limit })
    }
}

/// What a tenant has.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Holds {
    channels: bool,
    history: bool,
    webhook_rules: bool,
    cron_jobs: bool,
    connections: u64,
}

pub(crate) async fn list_tenants(call: &Call<'_>, request: ListTenants) -> Reply {
    let ListTenants { after, limit } = request;
    let context = call.context;
    let max = context.max_tenants_listed;
    if limit > max {
        return Err(CommandReply::error(
            ErrorCode::ValidationError,
            format!("'limit' must be an integer from 1 to {max} (ARQONBUS_STATUS_MAX_TENANTS)"),
        ));
    }
    let gathered = async {
        Ok::<_, BusError>((
            context.registry.tenants().await?,
            context
                .bus
                .history_names(subject::HISTORY_STREAM_PREFIX)
                .await?,
            context.cron_jobs.keys().await?,
            context.presence.connections(None, max).await?,
        ))
    };
    let (channels, streams, jobs, connections) = gathered
        .await
        .map_err(|e| failed(ErrorCode::StatusError, "list the tenants", &e))?;

    let mut tenants: BTreeMap<String, Holds> = BTreeMap::new();
    let mut hold = |tenant: &str, mark: &dyn Fn(&mut Holds)| {
        // Only names a tenant can have: a stray key or stream names none.
        if TenantId::parse(tenant).is_ok() {
            mark(tenants.entry(tenant.to_owned()).or_default());
        }
    };
    for tenant in &channels {
        hold(tenant, &|h| h.channels = true);
    }
    for stream in &streams {
        if let Some(tenant) = stream.strip_prefix(subject::HISTORY_STREAM_PREFIX) {
            hold(tenant, &|h| h.history = true);
        }
    }
    for tenant in context.webhook_tenants.tenants() {
        hold(&tenant, &|h| h.webhook_rules = true);
    }
    for key in &jobs {
        if let Some((tenant, _)) = layout::split_tenant_key(key) {
            hold(tenant, &|h| h.cron_jobs = true);
        }
    }
    for (tenant, n) in &connections.per_tenant {
        hold(tenant.as_str(), &|h| h.connections = *n);
    }

    let total = tenants.len();
    let mut following = tenants.iter().filter(|(tenant, _)| {
        after
            .as_ref()
            .is_none_or(|after| tenant.as_str() > after.as_str())
    });
    let page: Vec<(&String, &Holds)> = following.by_ref().take(limit).collect();
    let more = following.next().is_some();
    let listed: Vec<Value> = page
        .iter()
        .map(|(tenant, holds)| {
            json!({
                "tenant": tenant,
                "channels": holds.channels,
                "history": holds.history,
                "webhook_rules": holds.webhook_rules,
                "cron_jobs": holds.cron_jobs,
                "connections": holds.connections,
            })
        })
        .collect();
    let mut data = object(json!({
        "tenants": listed,
        "total_tenants": total,
        "limit": limit,
        "complete": !more,
        "connections_complete": connections.complete,
    }));
    if more && let Some((last, _)) = page.last() {
        data.insert("next_after".to_owned(), Value::from(last.as_str()));
    }
    call.queried(&mut data);
    Ok(CommandReply::success(
        format!("Found {total} tenants"),
        data,
    ))
}
