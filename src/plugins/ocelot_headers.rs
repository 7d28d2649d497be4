//! Ocelot header options as plugins:
//! - `UpstreamHeaderTransform` (access) and `DownstreamHeaderTransform` (header_filter): a
//!   value without a comma sets the header; `find, replace` replaces every occurrence of
//!   `find` in the header's values, only when the header is there. Placeholders: `{BaseUrl}`,
//!   `{DownstreamBaseUrl}`, `{RemoteIpAddress}`, `{TraceId}` (the request id),
//!   `{UpstreamHost}` (the client's Host header as sent).
//! - `RequestIdKey` (access): a request without that header gets the request id under it;
//!   one that has it keeps (and forwards) its own. Ocelot does not echo it to the client.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::{
    BuildCx, Checks, Ctx, Flow, Phases, Plugin, PluginSpec, Request, ResponseHead, Validate,
};

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    BaseUrl,
    DownstreamBaseUrl,
    RemoteIp,
    TraceId,
    UpstreamHost,
}

/// A value with its placeholders found once.
#[derive(Debug, Clone, PartialEq)]
struct Text(Vec<Part>);

impl Text {
    fn parse(s: &str) -> Text {
        let mut parts = Vec::new();
        let mut rest = s;
        let mut lit = String::new();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|c| open + c) else {
                break;
            };
            let part = match &rest[open + 1..close] {
                "BaseUrl" => Some(Part::BaseUrl),
                "DownstreamBaseUrl" => Some(Part::DownstreamBaseUrl),
                "RemoteIpAddress" => Some(Part::RemoteIp),
                "TraceId" => Some(Part::TraceId),
                "UpstreamHost" => Some(Part::UpstreamHost),
                _ => None,
            };
            match part {
                Some(p) => {
                    lit.push_str(&rest[..open]);
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(p);
                }
                None => lit.push_str(&rest[..=close]),
            }
            rest = &rest[close + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Text(parts)
    }

    fn fixed(&self) -> Option<&str> {
        match self.0.as_slice() {
            [] => Some(""),
            [Part::Lit(l)] => Some(l),
            _ => None,
        }
    }

    fn has(&self, p: &Part) -> bool {
        self.0.contains(p)
    }

    /// The text with placeholders filled; `downstream` fills `{DownstreamBaseUrl}`.
    fn render(&self, env: &Env<'_>, downstream: &str) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::BaseUrl => out.push_str(env.base_url),
                Part::DownstreamBaseUrl => out.push_str(downstream),
                Part::RemoteIp => out.push_str(&env.ctx.client.ip().to_string()),
                Part::TraceId => out.push_str(env.ctx.request_id.as_str()),
                Part::UpstreamHost => out.push_str(
                    env.ctx
                        .host
                        .as_ref()
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default(),
                ),
            }
        }
        out
    }
}

struct Env<'a> {
    ctx: &'a Ctx<'a>,
    base_url: &'a str,
}

#[derive(Debug, Clone)]
enum Rule {
    /// A constant value is a header value built once.
    SetFixed(HeaderName, HeaderValue),
    Set(HeaderName, Text),
    Replace {
        name: HeaderName,
        find: Text,
        replace: Text,
    },
}

fn compile(pairs: &[(String, String)]) -> Vec<Rule> {
    pairs
        .iter()
        .filter_map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            Some(match value.split_once(',') {
                Some((find, replace)) => Rule::Replace {
                    name,
                    find: Text::parse(find),
                    replace: Text::parse(replace.trim_start()),
                },
                None => {
                    let text = Text::parse(value);
                    match text.fixed().and_then(|f| HeaderValue::from_str(f).ok()) {
                        Some(v) => Rule::SetFixed(name, v),
                        None => Rule::Set(name, text),
                    }
                }
            })
        })
        .collect()
}

fn apply(rules: &[Rule], headers: &mut HeaderMap, env: &Env<'_>, downstream_bases: &[String]) {
    for rule in rules {
        match rule {
            Rule::SetFixed(name, v) => {
                headers.insert(name.clone(), v.clone());
            }
            Rule::Set(name, text) => {
                if let Ok(v) = HeaderValue::from_str(
                    &text.render(env, downstream_bases.first().map_or("", String::as_str)),
                ) {
                    headers.insert(name.clone(), v);
                }
            }
            Rule::Replace {
                name,
                find,
                replace,
            } => {
                if !headers.contains_key(name) {
                    continue;
                }
                // `{DownstreamBaseUrl}` in the find part stands for any of the route's hosts.
                let finds: Vec<String> = if find.has(&Part::DownstreamBaseUrl) {
                    downstream_bases
                        .iter()
                        .map(|d| find.render(env, d))
                        .collect()
                } else {
                    vec![find.render(env, "")]
                };
                let replacement =
                    replace.render(env, downstream_bases.first().map_or("", String::as_str));
                let values: Vec<HeaderValue> = headers
                    .get_all(name)
                    .iter()
                    .map(|v| {
                        let Ok(text) = v.to_str() else {
                            return v.clone();
                        };
                        let mut out = text.to_string();
                        for f in finds.iter().filter(|f| !f.is_empty()) {
                            out = out.replace(f.as_str(), &replacement);
                        }
                        HeaderValue::from_str(&out).unwrap_or_else(|_| v.clone())
                    })
                    .collect();
                headers.remove(name);
                for v in values {
                    headers.append(name.clone(), v);
                }
            }
        }
    }
}

/// UpstreamHeaderTransform and DownstreamHeaderTransform of one route (route keys first,
/// then the global keys the route lacks), with what their placeholders need.
#[derive(Debug, Clone, Deserialize)]
pub struct TransformsConfig {
    pub upstream: Vec<(String, String)>,
    pub downstream: Vec<(String, String)>,
    /// `GlobalConfiguration.BaseUrl`.
    pub base_url: String,
    /// `scheme://host[:port]` of each destination of the route (`{DownstreamBaseUrl}`).
    pub downstream_bases: Vec<String>,
}

impl Validate for TransformsConfig {
    fn validate(&self, c: &mut Checks) {
        for (field, list) in [
            ("upstream", &self.upstream),
            ("downstream", &self.downstream),
        ] {
            for (i, (name, _)) in list.iter().enumerate() {
                http_header_name(c, &format!("{field}[{i}]"), name);
            }
        }
    }
}

impl PluginSpec for HeaderTransforms {
    const NAME: &'static str = "ocelot-header-transforms";
    const PRIORITY: i32 = 2000;
    type Config = TransformsConfig;

    fn build(c: TransformsConfig, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(
            HeaderTransforms::new(&c.upstream, &c.downstream, &c.base_url, c.downstream_bases)
                .map(|p| Arc::new(p) as Arc<dyn Plugin>),
        )
    }
}

/// The header transforms of one route.
pub struct HeaderTransforms {
    upstream: Vec<Rule>,
    downstream: Vec<Rule>,
    base_url: Arc<str>,
    /// `scheme://host[:port]` of each destination of the route (`{DownstreamBaseUrl}`).
    downstream_bases: Vec<String>,
}

impl HeaderTransforms {
    /// `None` when both lists are empty.
    pub fn new(
        upstream: &[(String, String)],
        downstream: &[(String, String)],
        base_url: &str,
        downstream_bases: Vec<String>,
    ) -> Option<Self> {
        if upstream.is_empty() && downstream.is_empty() {
            return None;
        }
        Some(HeaderTransforms {
            upstream: compile(upstream),
            downstream: compile(downstream),
            base_url: base_url.into(),
            downstream_bases,
        })
    }
}

impl Plugin for HeaderTransforms {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn priority(&self) -> i32 {
        Self::PRIORITY
    }

    fn phases(&self) -> Phases {
        let mut p = Phases::NONE;
        if !self.upstream.is_empty() {
            p = p | Phases::ACCESS;
        }
        if !self.downstream.is_empty() {
            p = p | Phases::RESPONSE_HEAD;
        }
        p
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let env = Env {
            ctx,
            base_url: &self.base_url,
        };
        apply(
            &self.upstream,
            req.headers_mut(),
            &env,
            &self.downstream_bases,
        );
        Flow::Continue
    }

    fn response_head(&self, ctx: &mut Ctx<'_>, resp: &mut ResponseHead<'_>) {
        let env = Env {
            ctx,
            base_url: &self.base_url,
        };
        apply(
            &self.downstream,
            resp.headers_mut(),
            &env,
            &self.downstream_bases,
        );
    }
}

/// `RequestIdKey`: the header the request id goes upstream under.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestIdConfig {
    pub key: String,
}

impl Validate for RequestIdConfig {
    fn validate(&self, c: &mut Checks) {
        http_header_name(c, "key", &self.key);
    }
}

/// Ocelot (ASP.NET Core) takes any HTTP header name (an RFC 9110 token), not only Kong's
/// stricter `typedefs.header_name`.
fn http_header_name(c: &mut Checks, field: &str, name: &str) {
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        c.error(
            field,
            format!("bad header name '{name}': not an HTTP header name"),
        );
    }
}

/// `RequestIdKey` (PRIORITY 900).
pub struct RequestIdKey {
    header: HeaderName,
}

impl PluginSpec for RequestIdKey {
    const NAME: &'static str = "ocelot-request-id";
    const PRIORITY: i32 = 900;
    type Config = RequestIdConfig;

    fn build(c: RequestIdConfig, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        let header = HeaderName::from_bytes(c.key.as_bytes()).map_err(|e| e.to_string())?;
        Ok(Some(Arc::new(RequestIdKey { header })))
    }
}

impl Plugin for RequestIdKey {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn priority(&self) -> i32 {
        Self::PRIORITY
    }

    fn phases(&self) -> Phases {
        Phases::ACCESS
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        if !req.headers().contains_key(&self.header) {
            req.headers_mut()
                .insert(self.header.clone(), ctx.request_id.header());
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx<'static> {
        let mut c = Ctx::new(
            crate::exchange::RequestId::new(),
            "10.1.2.3:5555".parse().unwrap(),
            "127.0.0.1:8000".parse().unwrap(),
            std::time::Instant::now(),
        );
        c.host = Some(HeaderValue::from_static("client.example.com:8443"));
        c
    }

    #[test]
    fn transforms_table() {
        let c = ctx();
        let env = Env {
            ctx: &c,
            base_url: "http://gw",
        };
        let bases = vec!["http://down:8080".to_string()];
        for (rule, before, after) in [
            (("Uncle", "Bob"), Some("Alice"), Some("Bob")),
            (("Uncle", "Bob"), None, Some("Bob")),
            (("Laz", "D, GP"), Some("D"), Some("GP")),
            (("Laz", "D, GP"), None, None),
            (("Laz", "a, b"), Some("a-a"), Some("b-b")),
            (
                ("X-Host", "{UpstreamHost}"),
                None,
                Some("client.example.com:8443"),
            ),
            (("X-Ip", "{RemoteIpAddress}"), None, Some("10.1.2.3")),
            (("X-Fwd", "{BaseUrl}"), None, Some("http://gw")),
            (
                ("Location", "{DownstreamBaseUrl}, {BaseUrl}"),
                Some("http://down:8080/a"),
                Some("http://gw/a"),
            ),
            (("X-Keep", "{Unknown}"), None, Some("{Unknown}")),
        ] {
            let rules = compile(&[(rule.0.to_string(), rule.1.to_string())]);
            let mut h = HeaderMap::new();
            let name = HeaderName::from_bytes(rule.0.as_bytes()).unwrap();
            if let Some(b) = before {
                h.insert(name.clone(), HeaderValue::from_str(b).unwrap());
            }
            apply(&rules, &mut h, &env, &bases);
            assert_eq!(h.get(&name).map(|v| v.to_str().unwrap()), after, "{rule:?}");
        }
    }
}
