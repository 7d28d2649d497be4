//! Which plugins run for a request on a route, as Kong 3.x resolves them
//! (`kong/runloop/plugins_iterator.lua`): per plugin name, the most specific enabled instance
//! that applies, then descending PRIORITY. Compiled once per route, and once per route and
//! consumer where a consumer (or a consumer group of theirs) has plugins of its own there:
//! the pipeline switches to that chain once authentication identified the consumer.
//!
//! Precedence, most specific first (Kong's table):
//!
//! ```text
//!  1 consumer + route + service     7 route + service
//!  2 group + route + service        8 consumer
//!  3 consumer + route               9 consumer group
//!  4 consumer + service            10 route
//!  5 group + route                 11 service
//!  6 group + service               12 global
//! ```
//!
//! What cannot be served closes the route instead (`Closed`): a resolved plugin that is not
//! built and does more than observe; a consumer-scoped plugin that is not built, on a route
//! whose authentication could identify its consumer; a filter chain on the route or its
//! service that did not load (a build without the `wasm` feature). The filter chains that
//! loaded run as one plugin, last in every phase (`filters`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::model::{Consumer, Model, Plugin as PluginEntity, PluginScope};
use crate::plugins::registry::{Kind, Registry};
use crate::plugins::{Chain, Plugin};

use super::filters;

/// A route's plugins: its chain, per consumer with plugins of its own the chain once that
/// consumer is known, and what closes it.
pub struct RouteChains {
    pub chain: Chain,
    pub for_consumer: HashMap<usize, Arc<Chain>>,
    pub closing: Vec<String>,
}

/// Resolves chains over one model's plugins.
pub struct Resolver<'m> {
    model: &'m Model,
    /// Each plugin entity built (`None`: disabled, not served, or broken).
    built: &'m [Option<Arc<dyn Plugin>>],
    registry: &'m Registry,
    /// The filter chains, loaded.
    filters: &'m filters::Compiled,
    /// Enabled instances by where they attach, so a route looks only at those that can
    /// apply to it.
    global: Vec<usize>,
    by_service: HashMap<usize, Vec<usize>>,
    by_route: HashMap<usize, Vec<usize>>,
    /// By consumer: the consumer-scoped instances that are theirs, directly or through a
    /// group.
    by_consumer: HashMap<usize, Vec<usize>>,
}

impl<'m> Resolver<'m> {
    pub fn new(
        model: &'m Model,
        built: &'m [Option<Arc<dyn Plugin>>],
        registry: &'m Registry,
        filters: &'m filters::Compiled,
    ) -> Self {
        let mut r = Resolver {
            model,
            built,
            registry,
            filters,
            global: Vec::new(),
            by_service: HashMap::new(),
            by_route: HashMap::new(),
            by_consumer: HashMap::new(),
        };
        // Disabled instances are left out, as Kong leaves them out: they neither run nor
        // hide a less specific instance of the same plugin.
        for (i, p) in model.plugins.iter().enumerate().filter(|(_, p)| p.enabled) {
            if p.scope.is_consumer_scoped() {
                for (c, consumer) in model.consumers.iter().enumerate() {
                    if is_theirs(&p.scope, c, consumer) {
                        r.by_consumer.entry(c).or_default().push(i);
                    }
                }
                continue;
            }
            match (p.scope.route, p.scope.service) {
                (Some(rt), _) => r.by_route.entry(rt).or_default().push(i),
                (None, Some(s)) => r.by_service.entry(s).or_default().push(i),
                (None, None) => r.global.push(i),
            }
        }
        r
    }

    /// The enabled global plugins that are built.
    pub fn global(&self) -> Chain {
        Chain::new(
            self.global
                .iter()
                .filter_map(|&i| self.built[i].clone())
                .collect(),
        )
    }

    /// The chains of Kong route `route`, and what closes it.
    pub fn route(&self, route: usize) -> RouteChains {
        let service = self.model.routes[route].service;
        let base = self.best(route, service, None, &[]);
        let mut closing = Vec::new();
        let wasm = self.filter_chains(route, service, &mut closing);
        let mut authenticates = false;
        for &i in &base {
            let kind = self.kind(i);
            authenticates |= kind == Some(Kind::Authenticates);
            if self.built[i].is_none() && kind != Some(Kind::Observes) {
                closing.push(describe(&self.model.plugins[i]));
            }
        }
        let mut for_consumer = HashMap::new();
        if authenticates {
            for (&c, own) in &self.by_consumer {
                let consumer = &self.model.consumers[c];
                let applies: Vec<usize> = own
                    .iter()
                    .copied()
                    .filter(|&i| {
                        rank(
                            &self.model.plugins[i].scope,
                            route,
                            service,
                            Some((c, consumer)),
                        )
                        .is_some()
                    })
                    .collect();
                if applies.is_empty() {
                    continue;
                }
                let mut unserved = false;
                for &i in &applies {
                    if self.built[i].is_none() && self.kind(i) != Some(Kind::Observes) {
                        unserved = true;
                        closing.push(format!(
                            "{} for {}, who can be identified on this route",
                            describe(&self.model.plugins[i]),
                            who(self.model, &self.model.plugins[i].scope)
                        ));
                    }
                }
                if !unserved {
                    let chain = self.chain(
                        &self.best(route, service, Some((c, consumer)), &applies),
                        wasm.as_ref(),
                    );
                    for_consumer.insert(c, Arc::new(chain));
                }
            }
        }
        closing.sort();
        closing.dedup();
        RouteChains {
            chain: self.chain(&base, wasm.as_ref()),
            for_consumer,
            closing,
        }
    }

    fn kind(&self, i: usize) -> Option<Kind> {
        self.registry
            .info(&self.model.plugins[i].name)
            .map(|i| i.kind)
    }

    /// Per plugin name, the most specific instance (the first declared among equals), in
    /// declaration order: the route's candidates and, for a consumer, `own`.
    fn best(
        &self,
        route: usize,
        service: Option<usize>,
        consumer: Option<(usize, &Consumer)>,
        own: &[usize],
    ) -> Vec<usize> {
        let none = Vec::new();
        let on_route = self.by_route.get(&route).unwrap_or(&none);
        let on_service = service
            .and_then(|s| self.by_service.get(&s))
            .unwrap_or(&none);
        let candidates = on_route
            .iter()
            .chain(on_service)
            .chain(&self.global)
            .chain(own)
            .filter_map(|&i| {
                Some((
                    rank(&self.model.plugins[i].scope, route, service, consumer)?,
                    i,
                ))
            });
        let mut best: Vec<(&str, u8, usize)> = Vec::new();
        for (rank, i) in candidates {
            let name = self.model.plugins[i].name.as_str();
            match best.iter_mut().find(|(n, _, _)| *n == name) {
                Some(b) if rank > b.1 || (rank == b.1 && i < b.2) => *b = (name, rank, i),
                Some(_) => {}
                None => best.push((name, rank, i)),
            }
        }
        let mut out: Vec<usize> = best.into_iter().map(|(_, _, i)| i).collect();
        out.sort_unstable();
        out
    }

    /// The plugins `instances`, then the route's filters (`wasm`).
    fn chain(&self, instances: &[usize], wasm: Option<&Arc<dyn Plugin>>) -> Chain {
        Chain::new(
            instances
                .iter()
                .filter_map(|&i| self.built[i].clone())
                .chain(wasm.cloned())
                .collect(),
        )
    }

    /// The plugin running the filters of the enabled chains on `route` and its service
    /// (the service's first, as Kong composes them); a chain that did not load closes it.
    fn filter_chains(
        &self,
        route: usize,
        service: Option<usize>,
        closing: &mut Vec<String>,
    ) -> Option<Arc<dyn Plugin>> {
        let mut on_route: Vec<(bool, usize)> = Vec::new();
        for (i, fc) in self.model.filter_chains.iter().enumerate() {
            if !fc.enabled || rank(&fc.scope, route, service, None).is_none() {
                continue;
            }
            if self.filters.loaded(i) {
                on_route.push((fc.scope.route.is_some(), i));
            } else {
                closing.push(filters::describe(fc));
            }
        }
        on_route.sort_by_key(|(is_route, _)| *is_route);
        let order: Vec<usize> = on_route.into_iter().map(|(_, i)| i).collect();
        self.filters.plugin(&order)
    }
}

/// The instance's scope belongs to consumer `c`: scoped to them, or to a group of theirs.
fn is_theirs(scope: &PluginScope, c: usize, consumer: &Consumer) -> bool {
    match (scope.consumer, scope.consumer_group) {
        (Some(x), _) => x == c,
        (None, Some(g)) => consumer.groups.contains(&g),
        (None, None) => false,
    }
}

/// How specific an instance is for a request on `route` (on `service`) by `consumer`, on
/// Kong's scale (12 = consumer + route + service ... 1 = global); `None` when it does not
/// apply.
fn rank(
    scope: &PluginScope,
    route: usize,
    service: Option<usize>,
    consumer: Option<(usize, &Consumer)>,
) -> Option<u8> {
    if scope.route.is_some_and(|r| r != route) || scope.service.is_some_and(|s| Some(s) != service)
    {
        return None;
    }
    let (c, g) = (scope.consumer.is_some(), scope.consumer_group.is_some());
    if (c || g) && !consumer.is_some_and(|(i, consumer)| is_theirs(scope, i, consumer)) {
        return None;
    }
    let (r, s) = (scope.route.is_some(), scope.service.is_some());
    Some(match (c, g, r, s) {
        (true, _, true, true) => 12,
        (false, true, true, true) => 11,
        (true, _, true, false) => 10,
        (true, _, false, true) => 9,
        (false, true, true, false) => 8,
        (false, true, false, true) => 7,
        (false, false, true, true) => 6,
        (true, _, false, false) => 5,
        (false, true, false, false) => 4,
        (false, false, true, false) => 3,
        (false, false, false, true) => 2,
        (false, false, false, false) => 1,
    })
}

/// `plugin 'name' (file:line path)`.
fn describe(p: &PluginEntity) -> String {
    format!(
        "plugin '{}' ({}:{} {})",
        p.name, p.origin.file, p.origin.line, p.origin.path
    )
}

/// Whom a consumer-scoped instance is for.
fn who(model: &Model, scope: &PluginScope) -> String {
    match (scope.consumer, scope.consumer_group) {
        (Some(c), _) => format!("consumer '{}'", model.consumers[c].label()),
        (None, Some(g)) => format!("consumer group '{}'", model.consumer_groups[g].name),
        (None, None) => String::new(),
    }
}
