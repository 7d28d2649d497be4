//! Address rules as gateway configs write them: one address, a range (`a-b`, or `a-9` for
//! the last IPv4 octet), `addr/mask` or a CIDR, IPv4 and IPv6. Used by the Ocelot loader to
//! check SecurityOptions and by the plugins that allow or deny clients.

use std::net::IpAddr;

/// An inclusive address range; IPv4 addresses are kept as IPv4-mapped IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRule {
    pub start: u128,
    pub end: u128,
}

/// An address as a number, IPv4 as IPv4-mapped IPv6, so that ranges of both compare.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(v6),
        },
    }
}

impl IpRule {
    /// `10.0.0.1`, `10.0.0.1-10.0.0.9`, `10.0.0.1-9` (last octet), `10.0.0.0/255.255.255.0`,
    /// `10.0.0.0/8`, `2001:db8::/32`.
    pub fn parse(s: &str) -> Option<IpRule> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let start: IpAddr = a.trim().parse().ok()?;
            let end: IpAddr = match b.trim().parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => match start {
                    IpAddr::V4(v4) => {
                        let last: u8 = b.trim().parse().ok()?;
                        let o = v4.octets();
                        IpAddr::from([o[0], o[1], o[2], last])
                    }
                    IpAddr::V6(_) => return None,
                },
            };
            if start.is_ipv4() != end.is_ipv4() {
                return None;
            }
            let (start, end) = (to_u128(start), to_u128(end));
            return (start <= end).then_some(IpRule { start, end });
        }
        if let Some((a, m)) = s.split_once('/') {
            let ip: IpAddr = a.trim().parse().ok()?;
            let bits: u32 = match m.trim().parse::<u32>() {
                Ok(b) => b,
                Err(_) => {
                    let mask: std::net::Ipv4Addr = m.trim().parse().ok()?;
                    let v = u32::from(mask);
                    if v.leading_ones() + v.trailing_zeros() != 32 {
                        return None;
                    }
                    v.leading_ones()
                }
            };
            let width = if ip.is_ipv4() { 32 } else { 128 };
            if bits > width {
                return None;
            }
            let host_bits = width - bits;
            let v = to_u128(ip);
            let mask: u128 = if host_bits >= 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            let start = v & !mask;
            return Some(IpRule {
                start,
                end: start | mask,
            });
        }
        let ip: IpAddr = s.parse().ok()?;
        let v = to_u128(ip);
        Some(IpRule { start: v, end: v })
    }

    pub fn contains(&self, v: u128) -> bool {
        (self.start..=self.end).contains(&v)
    }
}

/// Which client address plugins see (Kong's `trusted_ips` and `real_ip_header`, nginx's
/// realip module): a connection from a trusted address may name the client it forwards for
/// in a header; from any other address, the connection's own address is the client's.
#[derive(Debug, Clone)]
pub struct RealIp {
    pub trusted: Vec<IpRule>,
    /// `X-Real-IP` unless set; with `X-Forwarded-For` the client is the last address, or
    /// with `recursive` the last one that is not trusted.
    pub header: http::HeaderName,
    pub recursive: bool,
}

impl RealIp {
    /// `--trusted-ips` values: addresses, ranges, CIDRs (an `unrecognised` one is an error).
    pub fn parse(trusted: &[String], header: &str, recursive: bool) -> Result<RealIp, String> {
        let trusted = trusted
            .iter()
            .map(|t| {
                IpRule::parse(t).ok_or_else(|| format!("`{t}` is not an address, range or CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let header = http::HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| format!("`{header}` is not a header name"))?;
        Ok(RealIp {
            trusted,
            header,
            recursive,
        })
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let v = to_u128(ip);
        self.trusted.iter().any(|r| r.contains(v))
    }

    /// The client a trusted connection forwards for, from its request headers.
    pub fn client(&self, headers: &http::HeaderMap) -> Option<IpAddr> {
        let mut addresses = headers
            .get_all(&self.header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rev();
        if self.recursive {
            let mut last = None;
            for a in addresses {
                let ip: IpAddr = a.parse().ok()?;
                last = Some(ip);
                if !self.trusts(ip) {
                    break;
                }
            }
            last
        } else {
            addresses.next()?.parse().ok()
        }
    }
}
