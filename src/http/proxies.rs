//! Who the client is behind proxies. A forwarding header is believed only
//! from a peer in `server.trusted_proxies`: anyone can send one, and a
//! believed lie lets one machine appear as any number of sources (reports,
//! the per-address socket cap).

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// `server.client_address_header` and `server.trusted_proxies`.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    header: Option<HeaderName>,
    trusted: Vec<IpNet>,
}

impl Proxies {
    /// Reads `header` (when set) from peers in `trusted`.
    pub fn new(header: Option<HeaderName>, trusted: Vec<IpNet>) -> Self {
        Self { header, trusted }
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.trusted.iter().any(|net| net.contains(&address))
    }

    /// The client behind `peer`: the peer itself, unless it is a trusted
    /// proxy and the header is set; then the right-most address in the
    /// header (its last line, then the lines before) that is not a trusted
    /// proxy. An entry that is not an address stops the walk: the hop that
    /// wrote it is the last one known, so it is the client.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        let Some(name) = &self.header else {
            return client;
        };
        if !self.trusts(client) {
            return client;
        }
        for line in headers.get_all(name).iter().rev() {
            let Ok(line) = line.to_str() else {
                return client;
            };
            for entry in line.rsplit(',') {
                let Some(hop) = address(entry) else {
                    return client;
                };
                client = hop.to_canonical();
                if !self.trusts(client) {
                    return client;
                }
            }
        }
        client
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1` or `[::1]:80`.
fn address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(trusted: &[&str]) -> Proxies {
        let nets = trusted.iter().map(|t| t.parse().unwrap()).collect();
        Proxies::new(Some(HeaderName::from_static("x-forwarded-for")), nets)
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append("x-forwarded-for", line.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(p.client(ip("203.0.113.9"), &headers(&["1.1.1.1"])), ip("203.0.113.9"));
        assert_eq!(
            proxies(&[]).client(ip("10.0.0.1"), &headers(&["1.1.1.1"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn through_trusted_proxies_the_right_most_untrusted_hop() {
        let p = proxies(&["10.0.0.0/8", "192.168.0.1/32"]);
        let chain = headers(&["6.6.6.6, 198.51.100.4, 192.168.0.1", "10.2.3.4"]);
        assert_eq!(p.client(ip("10.0.0.1"), &chain), ip("198.51.100.4"));
        assert_eq!(
            p.client(ip("10.0.0.1"), &headers(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        assert_eq!(p.client(ip("10.0.0.1"), &headers(&["10.0.0.2"])), ip("10.0.0.2"));
        assert_eq!(
            p.client(ip("10.0.0.1"), &headers(&["1.1.1.1, unknown"])),
            ip("10.0.0.1")
        );
        assert_eq!(p.client(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        assert_eq!(p.client(ip("::ffff:10.0.0.1"), &headers(&["5.5.5.5"])), ip("5.5.5.5"));
    }
}
