//! Outbound safety: webhook targets in private, loopback, link-local and similar ranges are refused unless the
//! configuration allows them — when an endpoint is saved (an address in its URL) and at every delivery (the
//! addresses its name resolves to, through `SafeResolver`, so a name cannot be pointed at them later).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use regex::Regex;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A webhook URL as the OpenAPI document states it (`WebhookIn.url`, whose attribute spells it out again; a test holds
/// the two together): http or https; a host name, an IPv4 address or a bracketed IPv6 address; an optional port, path
/// and query; no credentials and no fragment. Checked on the text as sent, before the URL parser, which takes far
/// more (`185.0.0.7*` is a domain to it), so that the document and the server agree on every input.
pub const URL_PATTERN: &str = r#"^[Hh][Tt][Tt][Pp][Ss]?://(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|\[(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,7}:|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}|(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}|(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}|(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}|:(?:(?::[0-9A-Fa-f]{1,4}){1,7}|:))\])(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?(?:\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"#;

/// The longest webhook URL.
const MAX_URL_CHARS: usize = 2048;

/// An allowed range: an address and how many leading bits must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    net: IpAddr,
    bits: u8,
}

impl Range {
    fn parse(text: &str) -> Result<Self, String> {
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (text, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| format!("`{text}` is not an address or a CIDR"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => {
                b.trim().parse::<u8>().ok().filter(|b| *b <= max).ok_or(format!("`{text}`: bad prefix length"))?
            }
            None => max,
        };
        Ok(Self { net, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    a[..whole] == b[..whole] && (rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0)
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is refused, or `None` when it is public.
fn refused_because(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        () if ip.is_loopback() => "loopback",
        () if ip.is_private() => "private",
        () if ip.is_link_local() => "link-local",
        () if ip.is_unspecified() || a == 0 => "unspecified",
        () if ip.is_broadcast() => "broadcast",
        () if ip.is_multicast() || a >= 240 => "multicast or reserved",
        () if a == 100 && (64..128).contains(&b) => "shared (CGNAT)",
        () if ip.is_documentation() || (a == 198 && (b == 18 || b == 19)) => "documentation or benchmarking",
        () => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        () if ip.is_loopback() => "loopback",
        () if ip.is_unspecified() => "unspecified",
        () if ip.is_multicast() => "multicast",
        () if first & 0xfe00 == 0xfc00 => "unique local (private)",
        () if first & 0xffc0 == 0xfe80 => "link-local",
        () if first == 0x2001 && ip.segments()[1] == 0x0db8 => "documentation",
        () => return None,
    })
}

/// Which webhook targets may be reached.
#[derive(Clone, Debug, Default)]
pub struct TargetPolicy {
    allowed: Vec<Range>,
}

impl TargetPolicy {
    /// `allow`: addresses (`127.0.0.1`) or CIDRs (`10.0.0.0/8`) reachable although private.
    pub fn new(allow: &[String]) -> Result<Self, String> {
        Ok(Self { allowed: allow.iter().map(|a| Range::parse(a)).collect::<Result<_, _>>()? })
    }

    /// `Err` says why `ip` may not be a target.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        match refused_because(ip) {
            Some(why) if !self.allowed.iter().any(|r| r.contains(ip)) => Err(format!(
                "{ip} is a {why} address; targets there are refused unless webhooks.allow_private_targets lists them"
            )),
            _ => Ok(()),
        }
    }

    /// A URL fit to be a webhook target: http or https, a host, no credentials, and not an address that is refused.
    /// A host name is checked again at every delivery, by what it resolves to.
    pub fn check_url(&self, url: &str) -> Result<Url, String> {
        static SHAPE: LazyLock<Regex> = LazyLock::new(|| Regex::new(URL_PATTERN).expect("URL_PATTERN compiles"));
        if url.chars().count() > MAX_URL_CHARS {
            return Err(format!("must be at most {MAX_URL_CHARS} characters"));
        }
        let parsed = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("must be http:// or https://, not {}://", parsed.scheme()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("must not carry a user name or password".into());
        }
        if !SHAPE.is_match(url) {
            return Err("must be http(s)://, a host name or an IP address, an optional port, path and query: no \
                        fragment, spaces or characters a URL does not hold as they are"
                .into());
        }
        match parsed.host() {
            None => return Err("must name a host".into()),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(name)) => {
                if name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost") {
                    self.check_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
                }
            }
        }
        Ok(parsed)
    }

    /// A resolver for the HTTP client that drops refused addresses.
    pub(super) fn resolver(self: &Arc<Self>) -> Arc<SafeResolver> {
        Arc::new(SafeResolver(Arc::clone(self)))
    }
}

/// Resolves names with the system resolver and keeps only the addresses the policy allows.
pub(super) struct SafeResolver(Arc<TargetPolicy>);

impl Resolve for SafeResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.0);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.iter().copied().filter(|a| policy.check_ip(a.ip()).is_ok()).collect();
            if allowed.is_empty() {
                let why = found.first().map_or("it resolves to no address".to_owned(), |a| {
                    policy.check_ip(a.ip()).err().unwrap_or_default()
                });
                return Err(format!("refused: {host}: {why}").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_kin_are_refused() {
        let policy = TargetPolicy::default();
        for url in [
            "http://127.0.0.1/x",
            "http://10.0.0.1/x",
            "http://172.16.5.4/x",
            "http://192.168.1.1/x",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/x",
            "http://0.0.0.0/x",
            "http://224.0.0.1/x",
            "http://[::1]/x",
            "http://[fd00::1]/x",
            "http://[fe80::1]/x",
            "http://[::ffff:10.0.0.1]/x",
            "http://localhost:8080/x",
        ] {
            assert!(policy.check_url(url).is_err(), "{url} should be refused");
        }
        for url in ["https://example.com/hooks", "http://93.184.216.34/x", "https://[2606:4700::1111]/x"] {
            assert!(policy.check_url(url).is_ok(), "{url} should pass");
        }
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_no_credentials() {
        let policy = TargetPolicy::default();
        assert!(policy.check_url("ftp://example.com/").unwrap_err().contains("http"));
        assert!(policy.check_url("https://user:pw@example.com/").unwrap_err().contains("password"));
        assert!(policy.check_url("example.com/hook").unwrap_err().contains("not a URL"));
        for odd in
            ["https://185.122.225.7*", "https://example.com/#top", "https://example.com/a b", " https://example.com"]
        {
            assert!(policy.check_url(odd).unwrap_err().contains("host name"), "{odd:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(policy.check_url(&long).unwrap_err().contains("2048"));
        assert!(policy.check_url("https://my-host.example.co.uk:8443/a/b?c=d&e=%20").is_ok());
    }

    #[test]
    fn the_document_states_the_url_rule_the_server_applies() {
        let document = serde_json::to_value(crate::api::router().into_openapi()).unwrap();
        for schema in ["WebhookIn", "WebhookPatchIn"] {
            let url = &document["components"]["schemas"][schema]["properties"]["url"];
            assert_eq!((&url["pattern"], &url["maxLength"]), (&URL_PATTERN.into(), &MAX_URL_CHARS.into()), "{schema}");
        }
    }

    #[test]
    fn the_allow_list_takes_addresses_and_cidrs() {
        let policy = TargetPolicy::new(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        assert!(policy.check_url("http://127.0.0.1:9000/x").is_ok());
        assert!(policy.check_url("http://10.200.3.4/x").is_ok());
        assert!(policy.check_url("http://127.0.0.2/x").is_err(), "only the address listed");
        assert!(policy.check_url("http://192.168.0.1/x").is_err());
        assert!(TargetPolicy::new(&["10.0.0.0/33".into()]).unwrap_err().contains("prefix"));
        assert!(TargetPolicy::new(&["nope".into()]).unwrap_err().contains("`nope`"));
    }

    #[tokio::test]
    async fn names_resolving_only_to_refused_addresses_fail_at_delivery() {
        let refused = Arc::new(TargetPolicy::default()).resolver();
        let err = refused.resolve("localhost".parse().unwrap()).await.err().expect("refused");
        assert!(err.to_string().contains("refused: localhost"), "{err}");
        let allowed = Arc::new(TargetPolicy::new(&["127.0.0.1".into(), "::1".into()]).unwrap()).resolver();
        let addrs: Vec<SocketAddr> = allowed.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
