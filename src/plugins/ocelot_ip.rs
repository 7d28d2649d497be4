//! Ocelot `SecurityOptions` (access): the client address against IPBlockedList and
//! IPAllowedList. A blocked address, or one missing from a non-empty allow list, gets 403.
//! With ExcludeAllowedFromBlocked, addresses of the allow list are taken out of the block
//! list. Rules are kept as address ranges (Ocelot expands them to one string per address).

use std::net::IpAddr;

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;

use super::{BuildCx, Checks, Ctx, Flow, Phases, Plugin, PluginSpec, Request, Validate};
use crate::exchange::respond;
use crate::ip::{IpRule, to_u128};

/// The route's lists, merged with the global ones and checked by the Ocelot loader.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub allowed: Vec<String>,
    pub blocked: Vec<String>,
    pub exclude_allowed_from_blocked: bool,
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        for (field, list) in [("allowed", &self.allowed), ("blocked", &self.blocked)] {
            for (i, rule) in list.iter().enumerate() {
                if IpRule::parse(rule).is_none() {
                    c.error(
                        &format!("{field}[{i}]"),
                        format!("`{rule}` is not an address, range or CIDR"),
                    );
                }
            }
        }
    }
}

/// `SecurityOptions` (PRIORITY 3000).
pub struct SecurityOptions;

impl PluginSpec for SecurityOptions {
    const NAME: &'static str = "ocelot-security-options";
    const PRIORITY: i32 = 3000;
    type Config = Config;

    fn build(config: Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(Some(Arc::new(IpSecurity::new(&config))))
    }
}

pub struct IpSecurity {
    allowed: Vec<IpRule>,
    blocked: Vec<IpRule>,
    exclude_allowed_from_blocked: bool,
}

impl IpSecurity {
    pub fn new(o: &Config) -> Self {
        IpSecurity {
            allowed: o.allowed.iter().filter_map(|r| IpRule::parse(r)).collect(),
            blocked: o.blocked.iter().filter_map(|r| IpRule::parse(r)).collect(),
            exclude_allowed_from_blocked: o.exclude_allowed_from_blocked,
        }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        let v = to_u128(ip);
        let allowed = self.allowed.iter().any(|r| r.contains(v));
        let blocked = self.blocked.iter().any(|r| r.contains(v))
            && !(self.exclude_allowed_from_blocked && allowed);
        !blocked && (self.allowed.is_empty() || allowed)
    }
}

impl Plugin for IpSecurity {
    fn name(&self) -> &str {
        SecurityOptions::NAME
    }

    fn priority(&self) -> i32 {
        SecurityOptions::PRIORITY
    }

    fn phases(&self) -> Phases {
        Phases::ACCESS
    }

    fn access(&self, ctx: &mut Ctx<'_>, _req: &mut Request<'_>) -> Flow {
        if self.permits(ctx.client.ip()) {
            Flow::Continue
        } else {
            Flow::Respond(respond::error(
                StatusCode::FORBIDDEN,
                "Your IP address is not allowed on this route (SecurityOptions)",
                ctx.request_id.as_str(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_policy_table() {
        for (rule, ip, inside) in [
            ("192.168.1.1", "192.168.1.1", true),
            ("192.168.1.1", "192.168.1.2", false),
            ("192.168.1.1-192.168.1.9", "192.168.1.5", true),
            ("192.168.1.1-9", "192.168.1.10", false),
            ("192.168.1.0/24", "192.168.1.200", true),
            ("192.168.1.0/255.255.255.0", "192.168.2.1", false),
            ("10.0.0.0/8", "10.200.3.4", true),
            ("2001:db8::/32", "2001:db8::1", true),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("127.0.0.1", "::ffff:127.0.0.1", true),
        ] {
            let r = IpRule::parse(rule).unwrap_or_else(|| panic!("{rule}"));
            assert_eq!(
                r.contains(to_u128(ip.parse().unwrap())),
                inside,
                "{rule} {ip}"
            );
        }
        for bad in [
            "x",
            "1.2.3.4/33",
            "1.2.3.4/255.0.255.0",
            "1.2.3.9-1.2.3.1",
            "::1-5",
        ] {
            assert!(IpRule::parse(bad).is_none(), "{bad}");
        }
        let s = IpSecurity::new(&Config {
            allowed: vec!["10.0.0.0/8".into()],
            blocked: vec!["10.0.0.5".into()],
            exclude_allowed_from_blocked: false,
        });
        assert!(s.permits("10.0.0.4".parse().unwrap()));
        assert!(!s.permits("10.0.0.5".parse().unwrap()));
        assert!(!s.permits("11.0.0.1".parse().unwrap()));
        let s = IpSecurity::new(&Config {
            allowed: vec!["10.0.0.5".into()],
            blocked: vec!["10.0.0.0/8".into()],
            exclude_allowed_from_blocked: true,
        });
        assert!(s.permits("10.0.0.5".parse().unwrap()));
        assert!(!s.permits("10.0.0.6".parse().unwrap()));
    }
}
