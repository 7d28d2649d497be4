//! `ip-restriction` (PRIORITY 990, access; also TCP/TLS streams): lets a request through
//! only if the client address is in one of the `allow` ranges, or in none of the `deny`
//! ranges (IP addresses or CIDR blocks, IPv4 or IPv6); a refused request gets `status`
//! (403) and `message` (`kong/plugins/ip-restriction/handler.lua`). The client address is
//! Kong's `remote_addr`: the connection's, or the one a trusted proxy names
//! (`--trusted-ips`, `--real-ip-header`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use serde::Deserialize;

use http::StatusCode;

use super::{BuildCx, Checks, Ctx, Flow, Kind, Phases, Plugin, PluginSpec, Request, Validate};
use crate::exchange::respond;
use crate::ip::{IpRule, to_u128};

/// The plugin's `config` (Kong's `kong/plugins/ip-restriction/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Addresses or CIDR ranges allowed (one of `allow` and `deny`).
    pub allow: Option<Vec<String>>,
    /// Addresses or CIDR ranges denied (one of `allow` and `deny`).
    pub deny: Option<Vec<String>>,
    /// The status of a refused request (403 when unset).
    pub status: Option<f64>,
    /// The body message of a refused request.
    pub message: Option<String>,
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        for (field, list) in [("allow", &self.allow), ("deny", &self.deny)] {
            for (i, v) in list.iter().flatten().enumerate() {
                let field = format!("{field}[{i}]");
                if v.is_empty() {
                    c.error(&field, "length must be at least 1");
                } else if !is_ip_or_cidr(v) {
                    c.error(&field, format!("invalid ip or cidr range: '{v}'"));
                }
            }
        }
        if self.message.as_deref() == Some("") {
            c.error("message", "length must be at least 1");
        }
        // Kong's entity check; an empty list counts as not set.
        c.at_least_one_of(&[
            ("allow", self.allow.as_ref().is_some_and(|l| !l.is_empty())),
            ("deny", self.deny.as_ref().is_some_and(|l| !l.is_empty())),
        ]);
    }
}

/// Kong's `typedefs.ip_or_cidr`: an IPv4 or IPv6 address, alone or with a prefix length
/// (`/0`-`/32`, `/0`-`/128`, written without leading zeros).
pub fn is_ip_or_cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else {
        return s.parse::<Ipv4Addr>().is_ok() || s.parse::<Ipv6Addr>().is_ok();
    };
    let prefix = match prefix.parse::<u8>() {
        Ok(n) if n.to_string() == prefix => n,
        _ => return false,
    };
    (prefix <= 32 && ip.parse::<Ipv4Addr>().is_ok())
        || (prefix <= 128 && ip.parse::<Ipv6Addr>().is_ok())
}

/// `ip-restriction` (PRIORITY 990).
pub struct IpRestriction;

impl PluginSpec for IpRestriction {
    const NAME: &'static str = "ip-restriction";
    const PRIORITY: i32 = 990;
    const KIND: Kind = Kind::Acts;
    type Config = Config;

    fn build(config: Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        let rules = |list: Option<Vec<String>>| -> Vec<IpRule> {
            list.unwrap_or_default()
                .iter()
                .filter_map(|s| IpRule::parse(s))
                .collect()
        };
        let status = match config.status {
            Some(s) => StatusCode::from_u16(s as u16)
                .map_err(|_| format!("status: {s} is not an HTTP status"))?,
            None => StatusCode::FORBIDDEN,
        };
        Ok(Some(Arc::new(Handler {
            deny: rules(config.deny),
            allow: rules(config.allow),
            status,
            message: config.message,
        })))
    }
}

struct Handler {
    deny: Vec<IpRule>,
    allow: Vec<IpRule>,
    status: StatusCode,
    message: Option<String>,
}

impl Plugin for Handler {
    fn name(&self) -> &str {
        IpRestriction::NAME
    }
    fn priority(&self) -> i32 {
        IpRestriction::PRIORITY
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, ctx: &mut Ctx<'_>, _: &mut Request<'_>) -> Flow {
        let ip = ctx.client.ip().to_canonical();
        let v = to_u128(ip);
        let denied = self.deny.iter().any(|r| r.contains(v))
            || (!self.allow.is_empty() && !self.allow.iter().any(|r| r.contains(v)));
        if !denied {
            return Flow::Continue;
        }
        let message = match &self.message {
            Some(m) => std::borrow::Cow::Borrowed(m.as_str()),
            None => format!("IP address not allowed: {ip}").into(),
        };
        Flow::Respond(respond::message(self.status, &message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn defaults() {
        let c: Config = parse("allow: [10.0.0.0/8]").unwrap();
        assert_eq!((c.deny, c.status, c.message), (None, None, None));
        assert_eq!(
            parse::<Config>("{}").unwrap_err(),
            [": at least one of these fields must be non-empty: 'config.allow', 'config.deny'"]
        );
    }

    #[test]
    fn every_field() {
        let c: Config = parse(
            "allow: [10.0.0.0/8, 192.168.1.1, '::1', 'fe80::/10']\ndeny: [10.1.0.0/16]\n\
             status: 401\nmessage: Forbidden",
        )
        .unwrap();
        assert_eq!(c.allow.unwrap().len(), 4);
        assert_eq!(c.status, Some(401.0));
        assert_eq!(c.message.as_deref(), Some("Forbidden"));
    }

    #[test]
    fn rules() {
        let errs = parse::<Config>(
            "allow: [10.0.0.0/33, 300.1.1.1, 'fe80::/129', 10.0.0.0/08, '', localhost]\nmessage: ''",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "allow[0]: invalid ip or cidr range: '10.0.0.0/33'",
                "allow[1]: invalid ip or cidr range: '300.1.1.1'",
                "allow[2]: invalid ip or cidr range: 'fe80::/129'",
                "allow[3]: invalid ip or cidr range: '10.0.0.0/08'",
                "allow[4]: length must be at least 1",
                "allow[5]: invalid ip or cidr range: 'localhost'",
                "message: length must be at least 1",
            ]
        );
        assert_eq!(
            parse::<Config>("deny: [1.2.3.4]\nstatus: forbidden").unwrap_err(),
            ["status: expected a number, found `forbidden`"]
        );
        assert_eq!(
            parse::<Config>("deny: [1.2.3.4]\nstatuss: 403").unwrap_err(),
            ["statuss: unknown field `statuss`; did you mean `status`?"]
        );
    }

    #[test]
    fn real_configs() {
        for yaml in [
            "allow: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16]",
            "deny: [127.0.0.1]",
            "allow: [127.0.0.1]",
            "allow: [127.0.0.2]",
            "allow: [10.0.0.0/8, 192.168.1.1]",
            "deny: [127.0.0.0/24]",
            "deny: [127.0.0.1]\nmessage: Forbidden\nstatus: 401",
            // Both lists are allowed together.
            "allow: [10.0.0.0/8]\ndeny: [10.0.0.1]",
        ] {
            parse::<Config>(yaml).unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
        }
    }
}
