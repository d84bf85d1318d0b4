//! Where a tenant's settings may make Portico connect. A tenant admin is a customer, not the
//! operator: a mail server or an OAuth endpoint they enter must not reach the operator's own
//! network (loopback, private ranges, cloud metadata at 169.254.169.254, ...). Every name is
//! resolved once, every address it has is checked, and the connection goes to exactly the
//! checked addresses, so DNS rebinding between a check and a connect has no second lookup to
//! use. The operator opens ranges with PORTICO_EGRESS_ALLOW (an on-premises Exchange, say);
//! the operator's own Microsoft URLs and mail relay are trusted as they are and do not come
//! through here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// The ranges no tenant setting may reach unless the operator allows them, each with the
/// words an admin reads when refused.
const INTERNAL_V4: &[(&str, &str)] = &[
    ("0.0.0.0/8", "the unspecified network"),
    ("10.0.0.0/8", "a private network address"),
    ("100.64.0.0/10", "a carrier-grade NAT (shared) address"),
    ("127.0.0.0/8", "a loopback address of Portico's own machine"),
    (
        "169.254.0.0/16",
        "a link-local address (cloud metadata services live there)",
    ),
    ("172.16.0.0/12", "a private network address"),
    ("192.0.0.0/24", "an address reserved for protocol use"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.168.0.0/16", "a private network address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved or broadcast address"),
];

const INTERNAL_V6: &[(&str, &str)] = &[
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address of Portico's own machine"),
    ("100::/64", "a discard address"),
    ("2001:2::/48", "a benchmarking address"),
    ("2001:db8::/32", "a documentation address"),
    ("fc00::/7", "a private network (unique local) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
];

/// Why an address may not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Portico may not connect to {address}: it is {range}, inside the network Portico runs in, \
     not a server of yours. Use the server's public name or address; if this Portico runs \
     inside your own network, ask its operator to allow that range."
)]
pub struct Refused {
    pub address: IpAddr,
    pub range: &'static str,
}

impl Refused {
    /// The refusal beside the form field `setting` (its label, such as "Token URL").
    pub fn for_setting(&self, setting: &str) -> String {
        format!(
            "The {setting} is {}, {}: Portico may not connect inside the network it runs in. \
             Use the server's public name or address; if this Portico runs inside your own \
             network, ask its operator to allow that range.",
            self.address, self.range
        )
    }
}

/// Why a destination could not be resolved to addresses Portico may reach.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("No server named \"{host}\" could be found: {source}.")]
    NotFound {
        host: String,
        source: std::io::Error,
    },
    #[error("\"{0}\" has no addresses.")]
    NoAddresses(String),
    #[error("Looking up \"{host}\" took longer than {seconds} seconds.")]
    Timeout { host: String, seconds: u64 },
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// The egress policy: the internal ranges, less those the operator allowed.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    internal: Arc<Vec<(IpNet, &'static str)>>,
    allowed: Arc<Vec<IpNet>>,
}

impl Default for EgressPolicy {
    /// Nothing internal allowed.
    fn default() -> Self {
        Self::allowing(Vec::new())
    }
}

impl EgressPolicy {
    pub fn allowing(allowed: Vec<IpNet>) -> Self {
        let internal = INTERNAL_V4
            .iter()
            .chain(INTERNAL_V6)
            .filter_map(|(range, words)| Some((range.parse().ok()?, *words)))
            .collect();
        Self {
            internal: Arc::new(internal),
            allowed: Arc::new(allowed),
        }
    }

    /// Whether `address` may be reached. An IPv6 address that carries an IPv4 one (mapped,
    /// NAT64, 6to4) is judged by the IPv4 address too.
    pub fn check(&self, address: IpAddr) -> Result<(), Refused> {
        let judged = std::iter::once(address).chain(embedded_v4(address).map(IpAddr::V4));
        for candidate in judged {
            if self.allowed.iter().any(|range| range.contains(&candidate)) {
                continue;
            }
            if let Some((_, range)) = self
                .internal
                .iter()
                .find(|(net, _)| net.contains(&candidate))
            {
                return Err(Refused { address, range });
            }
        }
        Ok(())
    }

    /// Checks a host as typed into a form: a literal address is judged at once, a name only
    /// when it is resolved.
    pub fn check_literal(&self, host: &str) -> Result<(), Refused> {
        match literal_address(host) {
            Some(address) => self.check(address),
            None => Ok(()),
        }
    }

    /// Resolves `host` within `limit` and returns its addresses only if every one of them
    /// may be reached: connect to these, never to a second lookup of the name.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        limit: Duration,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        let addresses: Vec<SocketAddr> =
            match tokio::time::timeout(limit, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(addresses)) => addresses.collect(),
                Ok(Err(source)) => {
                    return Err(ResolveError::NotFound {
                        host: host.to_owned(),
                        source,
                    });
                }
                Err(_) => {
                    return Err(ResolveError::Timeout {
                        host: host.to_owned(),
                        seconds: limit.as_secs(),
                    });
                }
            };
        if addresses.is_empty() {
            return Err(ResolveError::NoAddresses(host.to_owned()));
        }
        for address in &addresses {
            self.check(address.ip())?;
        }
        Ok(addresses)
    }

    /// A resolver for reqwest that applies this policy to every name it looks up. reqwest
    /// does not ask a resolver about literal addresses: check URLs with [`Self::check_url`].
    pub fn resolver(&self) -> Arc<Resolver> {
        Arc::new(Resolver(self.clone()))
    }

    /// Checks a URL's host when it is a literal address (see [`Self::resolver`] for names).
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        match url.host() {
            Some(url::Host::Ipv4(address)) => self.check(IpAddr::V4(address)),
            Some(url::Host::Ipv6(address)) => self.check(IpAddr::V6(address)),
            _ => Ok(()),
        }
    }
}

/// The address a host is written as, brackets of an IPv6 literal included.
fn literal_address(host: &str) -> Option<IpAddr> {
    let host = host.trim();
    let bare = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// The IPv4 address inside an IPv6 one: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible
/// (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002:AABB:CCDD::/48).
fn embedded_v4(address: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = address else {
        return None;
    };
    let segments = v6.segments();
    let low = |a: u16, b: u16| Ipv4Addr::from((u32::from(a) << 16) | u32::from(b));
    match segments {
        [0, 0, 0, 0, 0, 0xffff, a, b] | [0, 0, 0, 0, 0, 0, a, b] if v6 != Ipv6Addr::UNSPECIFIED => {
            Some(low(a, b))
        }
        [0x64, 0xff9b, 0, 0, 0, 0, a, b] => Some(low(a, b)),
        [0x2002, a, b, ..] => Some(low(a, b)),
        _ => None,
    }
}

/// reqwest's resolver under the egress policy ([`EgressPolicy::resolver`]).
pub struct Resolver(EgressPolicy);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            // reqwest bounds the whole connection with its connect timeout.
            let addresses = policy
                .resolve(name.as_str(), 0, Duration::from_secs(3600))
                .await
                .map_err(|error| -> Box<dyn std::error::Error + Send + Sync> { Box::new(error) })?;
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// The egress refusal somewhere in an error's chain of sources, if that is what it was.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused);
        }
        if let Some(ResolveError::Refused(refused)) = error.downcast_ref::<ResolveError>() {
            return Some(refused);
        }
        current = error.source();
    }
    None
}

/// PORTICO_EGRESS_ALLOW: CIDRs (or single addresses) separated by commas or spaces.
pub fn parse_allow_list(raw: &str) -> Result<Vec<IpNet>, String> {
    raw.split([',', ' '])
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| item.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &EgressPolicy, address: &str) -> bool {
        policy.check(address.parse().unwrap()).is_err()
    }

    #[test]
    fn internal_ranges_are_refused_and_public_addresses_pass() {
        let policy = EgressPolicy::default();
        for internal in [
            "127.0.0.1",
            "127.3.2.1",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.251",
            "255.255.255.255",
            "192.0.2.10",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(refused(&policy, internal), "{internal} was let through");
        }
        for public in [
            "52.97.0.1",
            "40.99.1.2",
            "172.32.0.1",
            "2603:1036::1",
            "::ffff:52.97.0.1",
        ] {
            assert!(!refused(&policy, public), "{public} was refused");
        }
    }

    #[test]
    fn every_internal_range_is_written_right() {
        let policy = EgressPolicy::default();
        assert_eq!(policy.internal.len(), INTERNAL_V4.len() + INTERNAL_V6.len());
    }

    #[test]
    fn the_operator_opens_ranges() {
        let policy = EgressPolicy::allowing(parse_allow_list("10.20.0.0/16, 127.0.0.1").unwrap());
        assert!(!refused(&policy, "10.20.3.4"));
        assert!(refused(&policy, "10.21.0.1"));
        assert!(!refused(&policy, "127.0.0.1"));
        assert!(!refused(&policy, "::ffff:127.0.0.1"));
        assert!(refused(&policy, "127.0.0.2"));
        assert_eq!(
            parse_allow_list("10.0.0.0/8 nonsense"),
            Err("nonsense".to_owned())
        );
    }

    #[test]
    fn literals_are_judged_as_typed_and_names_when_resolved() {
        let policy = EgressPolicy::default();
        assert!(policy.check_literal("127.0.0.1").is_err());
        assert!(policy.check_literal("[::1]").is_err());
        assert!(policy.check_literal("mail.example.com").is_ok());
        let message = policy
            .check_literal("169.254.169.254")
            .err()
            .map(|e| e.to_string());
        assert!(message.is_some_and(|m| m.contains("169.254.169.254") && m.contains("link-local")));
    }

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused() {
        let policy = EgressPolicy::default();
        let result = policy
            .resolve("localhost", 25, Duration::from_secs(5))
            .await;
        assert!(
            matches!(result, Err(ResolveError::Refused(_))),
            "{result:?}"
        );
    }
}
