//! The SSRF guard: webhook URLs may not reach the bus's own network.
//!
//! A URL is refused at registration when its host is, or resolves to, an address of the
//! kinds below. DNS can change after that, so at delivery the HTTP client resolves names
//! through [`GuardedResolver`], which drops such addresses: the client connects only to
//! an address that was checked (no window between check and connect). IP literals never
//! reach a resolver; they are checked before each POST. Redirects are not followed and
//! proxies are not used, so neither can lead elsewhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Bound on one name resolution.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetError {
    #[error("'url' must not target a loopback, private, link-local or other internal address")]
    Internal,
    #[error("'url' host '{0}' cannot be resolved")]
    Unresolvable(String),
}

/// Whether `ip` is an address webhooks may not reach: unspecified, loopback, private
/// (RFC 1918), link-local, CGNAT (100.64/10), "this network" (0/8), multicast,
/// broadcast, reserved (240/4) or IETF protocol (192.0.0/24) addresses; for IPv6 also
/// unique-local (fc00::/7), site-local (fec0::/10) and the IPv6 forms that carry an IPv4
/// address (mapped, compatible, NAT64, 6to4), judged by that address.
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || a >= 240
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    // Deprecated IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16)
    // addresses reach an IPv4 host.
    let embedded_v4 = |high: u16, low: u16| {
        let [h1, h2] = high.to_be_bytes();
        let [l1, l2] = low.to_be_bytes();
        Ipv4Addr::new(h1, h2, l1, l2)
    };
    if segments[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        return is_internal_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_internal_v4(embedded_v4(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return is_internal_v4(embedded_v4(segments[1], segments[2]));
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] & 0xffc0) == 0xfec0
}

/// Checks where `url` points, at registration: its host must be, and resolve only to,
/// addresses webhooks may reach.
pub(crate) async fn check_target(url: &Url) -> Result<(), TargetError> {
    match url.host() {
        None => Err(TargetError::Internal),
        Some(Host::Ipv4(ip)) => allowed(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => allowed(IpAddr::V6(ip)),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(TargetError::Internal);
            }
            let addresses = resolve(&name)
                .await
                .map_err(|_| TargetError::Unresolvable(name.clone()))?;
            if addresses.is_empty() {
                return Err(TargetError::Unresolvable(name));
            }
            // One internal address is enough to refuse: the name may be used to reach it.
            match addresses.iter().any(|a| is_internal(a.ip())) {
                true => Err(TargetError::Internal),
                false => Ok(()),
            }
        }
    }
}

/// Checks an IP-literal host before a POST (names are checked by [`GuardedResolver`]).
pub(crate) fn check_literal(url: &Url) -> Result<(), TargetError> {
    match url.host() {
        Some(Host::Ipv4(ip)) => allowed(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => allowed(IpAddr::V6(ip)),
        Some(Host::Domain(_)) => Ok(()),
        None => Err(TargetError::Internal),
    }
}

fn allowed(ip: IpAddr) -> Result<(), TargetError> {
    if is_internal(ip) {
        Err(TargetError::Internal)
    } else {
        Ok(())
    }
}

async fn resolve(name: &str) -> std::io::Result<Vec<SocketAddr>> {
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, 0))).await {
        Ok(addresses) => Ok(addresses?.collect()),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "name resolution timed out",
        )),
    }
}

/// The HTTP client's resolver when internal targets are not allowed: it resolves with
/// the system resolver and keeps only the addresses webhooks may reach, so the client
/// can only connect to those.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let reachable: Vec<SocketAddr> = resolve(&name)
                .await?
                .into_iter()
                .filter(|a| !is_internal(a.ip()))
                .collect();
            if reachable.is_empty() {
                return Err(Box::new(TargetError::Internal) as _);
            }
            Ok(Box::new(reachable.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
        ] {
            assert!(is_internal(ip(internal)), "{internal} is internal");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.2.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(!is_internal(ip(public)), "{public} is public");
        }
    }

    #[tokio::test]
    async fn registration_checks_hosts_and_names() {
        for refused in [
            "http://127.0.0.1:9/x",
            "http://[::1]/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:8080/",
            "http://api.localhost/",
            "http://LOCALHOST./",
        ] {
            let url = Url::parse(refused).unwrap();
            assert_eq!(
                check_target(&url).await,
                Err(TargetError::Internal),
                "{refused}"
            );
        }
        let public = Url::parse("https://93.184.216.34/hook").unwrap();
        assert_eq!(check_target(&public).await, Ok(()));
        assert_eq!(check_literal(&public), Ok(()));
        let literal = Url::parse("http://192.168.0.10/").unwrap();
        assert_eq!(check_literal(&literal), Err(TargetError::Internal));
        let name = Url::parse("http://hooks.invalid/").unwrap();
        assert_eq!(check_literal(&name), Ok(()), "names are the resolver's");
        assert_eq!(
            check_target(&name).await,
            Err(TargetError::Unresolvable("hooks.invalid".into()))
        );
    }

    #[tokio::test]
    async fn the_resolver_keeps_only_reachable_addresses() {
        let refused = GuardedResolver.resolve("localhost".parse().unwrap()).await;
        let error = refused.err().expect("localhost resolves to loopback only");
        assert!(error.downcast_ref::<TargetError>().is_some(), "{error}");
    }
}
