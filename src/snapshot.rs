//! The compiled, immutable runtime form of one validated model: the router, each route's
//! plugin chain and each service's destination, ready to serve without further work.
//!
//! model ─▶ `Snapshot::compile` ─▶ `Arc<Snapshot>` (swapped in whole by `watch`)
//!
//! State that must outlive a reload (balancer positions now; counters and health later) is
//! not owned here: `State` keeps it by entity id, and each compile takes the entries of the
//! entities it still has.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderValue, StatusCode};

use crate::config::diag::Diagnostic;
use crate::config::model::{Model, PathHandling, Protocol};
use crate::plugins::{self, Chain, Plugin};
use crate::router::Router;

/// Runtime state kept across snapshots, keyed by entity identity.
#[derive(Default)]
pub struct State {
    balancer_positions: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

impl State {
    /// Hands out the kept entries for `ids` and forgets the others.
    fn positions(&self, ids: &[&str]) -> Vec<Arc<AtomicUsize>> {
        let mut map = self.balancer_positions.lock().unwrap_or_else(|e| e.into_inner());
        let kept: HashMap<String, Arc<AtomicUsize>> = ids.iter().map(|id| (id.to_string(), map.get(*id).cloned().unwrap_or_default())).collect();
        let out = ids.iter().map(|id| kept[*id].clone()).collect();
        *map = kept;
        out
    }
}

pub struct Snapshot {
    pub version: u64,
    /// Hash of every config file's bytes: equal hashes mean an identical config.
    pub hash: u64,
    pub loaded_at: SystemTime,
    pub model: Model,
    pub router: Router,
    pub routes: Vec<RouteRt>,
    pub services: Vec<ServiceRt>,
    pub warnings: Vec<Diagnostic>,
}

pub struct RouteRt {
    pub name: Arc<str>,
    pub service: Option<usize>,
    /// Allows https but not http: plain requests get 426 or a redirect.
    pub https_only: bool,
    pub https_redirect: StatusCode,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub path_handling: PathHandling,
    pub chain: Chain,
}

pub struct ServiceRt {
    pub name: Arc<str>,
    pub tls: bool,
    pub dest: Dest,
    /// `service.path`, `/` when unset.
    pub base_path: String,
    pub retries: u32,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

pub enum Dest {
    Direct(Peer),
    Balanced(Arc<Balancer>),
}

/// One upstream address and the Host header that goes with it.
#[derive(Clone)]
pub struct Peer {
    pub host: Arc<str>,
    pub port: u16,
    pub host_header: HeaderValue,
}

/// Weighted round-robin over an upstream's targets.
pub struct Balancer {
    pub name: String,
    pub peers: Vec<Peer>,
    /// Peer indices, each repeated weight/gcd times, interleaved.
    wheel: Vec<u32>,
    position: Arc<AtomicUsize>,
}

impl Balancer {
    /// The next peer, or `None` when every target has weight 0.
    pub fn next(&self) -> Option<&Peer> {
        if self.wheel.is_empty() {
            return None;
        }
        let i = self.position.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(&self.peers[self.wheel[i % self.wheel.len()] as usize])
    }
}

fn host_header(host: &str, port: u16, tls: bool) -> HeaderValue {
    let default = if tls { 443 } else { 80 };
    let text = if port == default { host.to_string() } else if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("invalid"))
}

fn wheel(weights: &[u32]) -> Vec<u32> {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let g = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd).max(1);
    let mut left: Vec<u32> = weights.iter().map(|w| w / g).collect();
    let mut out = Vec::new();
    // Interleave instead of runs, so consecutive requests spread across targets.
    while left.iter().any(|w| *w > 0) {
        for (i, w) in left.iter_mut().enumerate() {
            if *w > 0 {
                out.push(i as u32);
                *w -= 1;
            }
        }
    }
    out
}

impl Snapshot {
    pub fn compile(model: Model, warnings: Vec<Diagnostic>, state: &State, version: u64, hash: u64) -> Snapshot {
        let upstream_ids: Vec<&str> = model.upstreams.iter().map(|u| u.id.as_str()).collect();
        let positions = state.positions(&upstream_ids);
        let balancers: HashMap<&str, Arc<Balancer>> = model
            .upstreams
            .iter()
            .zip(positions)
            .map(|(u, position)| {
                let peers = u
                    .targets
                    .iter()
                    .map(|t| Peer {
                        host: t.host.as_str().into(),
                        port: t.port,
                        host_header: host_header(u.host_header.as_deref().unwrap_or(&t.host), t.port, false),
                    })
                    .collect();
                let weights: Vec<u32> = u.targets.iter().map(|t| t.weight).collect();
                (u.name.as_str(), Arc::new(Balancer { name: u.name.clone(), peers, wheel: wheel(&weights), position }))
            })
            .collect();

        let services = model
            .services
            .iter()
            .map(|s| {
                let tls = matches!(s.protocol, Protocol::Https | Protocol::Grpcs | Protocol::Wss | Protocol::Tls);
                let dest = match balancers.get(s.host.as_str()) {
                    Some(b) => Dest::Balanced(b.clone()),
                    None => Dest::Direct(Peer { host: s.host.as_str().into(), port: s.port, host_header: host_header(&s.host, s.port, tls) }),
                };
                ServiceRt {
                    name: s.display_name().into(),
                    tls,
                    dest,
                    base_path: s.path.clone().unwrap_or_else(|| "/".into()),
                    retries: s.retries,
                    connect_timeout: Duration::from_millis(s.connect_timeout),
                    read_timeout: Duration::from_millis(s.read_timeout),
                    write_timeout: Duration::from_millis(s.write_timeout),
                }
            })
            .collect();

        let built: Vec<Option<Arc<dyn Plugin>>> = model.plugins.iter().map(|p| if p.enabled { plugins::build(&p.name, &p.config.node) } else { None }).collect();
        let routes: Vec<RouteRt> = model
            .routes
            .iter()
            .enumerate()
            .map(|(idx, r)| {
                let allows = |p: Protocol| r.protocols.contains(&p);
                RouteRt {
                    name: r.display_name().into(),
                    service: r.service,
                    https_only: allows(Protocol::Https) && !allows(Protocol::Http),
                    https_redirect: StatusCode::from_u16(r.https_redirect_status_code).unwrap_or(StatusCode::UPGRADE_REQUIRED),
                    strip_path: r.strip_path,
                    preserve_host: r.preserve_host,
                    path_handling: r.path_handling,
                    chain: route_chain(&model, &built, idx),
                }
            })
            .collect();

        // Routes of disabled services are left out of the router, as Kong does.
        let active: Vec<(usize, &crate::config::model::Route)> =
            model.routes.iter().enumerate().filter(|(_, r)| r.service.is_none_or(|s| model.services[s].enabled)).collect();
        let router = Router::build(&active);
        Snapshot { version, hash, loaded_at: SystemTime::now(), router, routes, services, warnings, model }
    }
}

/// Kong's plugin resolution for one route: per plugin name the most specific instance
/// (route+service ▸ route ▸ service ▸ global), then descending PRIORITY.
fn route_chain(model: &Model, built: &[Option<Arc<dyn Plugin>>], route: usize) -> Chain {
    let service = model.routes[route].service;
    let mut best: HashMap<&str, (u8, Arc<dyn Plugin>)> = HashMap::new();
    for (p, plugin) in model.plugins.iter().zip(built) {
        let Some(plugin) = plugin else { continue };
        if p.scope.consumer.is_some() {
            continue;
        }
        let rank = match (p.scope.route, p.scope.service) {
            (Some(r), Some(s)) if r == route && Some(s) == service => 3,
            (Some(r), None) if r == route => 2,
            (None, Some(s)) if Some(s) == service => 1,
            (None, None) => 0,
            _ => continue,
        };
        if best.get(p.name.as_str()).is_none_or(|(b, _)| rank > *b) {
            best.insert(p.name.as_str(), (rank, plugin.clone()));
        }
    }
    let mut plugins: Vec<Arc<dyn Plugin>> = best.into_values().map(|(_, p)| p).collect();
    plugins.sort_by_key(|p| std::cmp::Reverse(p.priority()));
    Chain { plugins }
}

#[cfg(test)]
mod tests {
    use super::wheel;

    #[test]
    fn wheel_is_weighted_and_interleaved() {
        assert_eq!(wheel(&[100, 100]), vec![0, 1]);
        assert_eq!(wheel(&[200, 100]), vec![0, 1, 0]);
        assert_eq!(wheel(&[0, 50]), vec![1]);
        assert!(wheel(&[0, 0]).is_empty());
    }
}
