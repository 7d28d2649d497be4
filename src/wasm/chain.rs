//! A route's filters as one plugin, last in every phase (Kong runs filters after its Lua
//! plugins): the service chain's filters, then the route chain's, each in chain order, in
//! the request phases and the response phases alike.
//!
//! ```text
//! access          ─▶ per filter: root context (first use), HTTP context; then
//!                    on_request_headers in order (a local response answers now)
//! request_body    ─▶ on_request_body per piece (Pause: the body is held to its end)
//! response_head   ─▶ on_response_headers in order
//! response_body   ─▶ on_response_body per piece (Pause: held to its end)
//! log             ─▶ on_done, on_log, on_delete per filter
//! ```
//!
//! Per request, the contexts (and the instance generation they live in) are kept in the
//! request's extensions. A failing filter answers 500 with a JSON body while the response
//! head is not out; its instance is replaced and the request's later hooks are skipped.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use smallvec::SmallVec;

use super::Limits;
use super::abi::{Action, buffer};
use super::host::{Call, CallResponse, Dispatch, Facts, LocalResponse, Pseudo};
use super::modules::Filter;
use super::vm::{self, Failure, Hook};
use crate::exchange::{BodyFlow, Chunk, Ctx, Flow, LogEntry, Request, ResponseHead, respond};
use crate::plugins::{Phases, Plugin};

/// Kong's answer when a filter fails.
const FAILED: &str = "An unexpected error occurred";

/// The filters one route runs, in order (cheap to clone: a paused request's continuation
/// holds one).
#[derive(Clone)]
pub struct FilterChain(Arc<Inner>);

pub struct Inner {
    filters: Vec<Filter>,
    limits: Limits,
}

impl std::ops::Deref for FilterChain {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// A request's contexts, in its extensions.
#[derive(Clone, Default)]
struct Streams {
    /// Per filter, in order: the instance generation and the HTTP context id.
    each: SmallVec<[(u64, u32); 4]>,
    /// A filter failed: the rest of the request skips the chain.
    failed: bool,
    /// The filter a held body resumes at.
    request_body_from: usize,
    response_body_from: usize,
    /// The response head was replaced (a local response from a response hook, or the 500
    /// of a failure): this body replaces the upstream's (`Some(None)` once it was sent).
    replacement: Option<Option<Bytes>>,
}

impl FilterChain {
    pub fn new(filters: Vec<Filter>) -> Self {
        FilterChain(Arc::new(Inner {
            filters,
            limits: super::limits(),
        }))
    }

    pub fn filters(&self) -> &[Filter] {
        &self.filters
    }

    /// Runs `hook` of filter `i` with `call` moved into its instance and back.
    fn run(
        &self,
        i: usize,
        streams: &Streams,
        hook: Hook,
        (n, end): (usize, bool),
        call: &mut Call,
    ) -> Result<Action, Failure> {
        let id = streams.each[i].1;
        self.run_with(i, streams, call, |vm| vm.hook(hook, id, n, end))
    }

    /// Runs `f` on filter `i`'s instance with `call` moved into it and back.
    fn run_with(
        &self,
        i: usize,
        streams: &Streams,
        call: &mut Call,
        f: impl FnOnce(&mut vm::Vm) -> Result<Action, Failure>,
    ) -> Result<Action, Failure> {
        let filter = &self.filters[i];
        vm::with(&filter.module, Some(streams.each[i].0), |vm| {
            call.filter = Some(filter.name.clone());
            std::mem::swap(vm.call(), call);
            let out = f(vm);
            std::mem::swap(vm.call(), call);
            out
        })
    }

    /// The 500 of a failed filter.
    fn fail(&self, ctx: &mut Ctx<'_>, i: usize, failure: &Failure) -> Flow {
        self.failed(ctx, i, failure);
        Flow::Respond(respond::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            FAILED,
            ctx.request_id.as_str(),
        ))
    }

    /// `on_request_headers` of the filters from `from` on; a filter that dispatched HTTP
    /// calls pauses the chain until they are answered (`answered`).
    fn request_headers(&self, from: usize, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        let Some(streams) = live(ctx) else {
            return Flow::Continue;
        };
        let mut call = request_call(ctx, req);
        let end = ctx.body_length == Some(0);
        let mut flow = Flow::Continue;
        for i in from..self.filters.len() {
            let n = call.request.as_ref().map_or(0, HeaderMap::len);
            if let Err(e) = self.run(i, &streams, Hook::RequestHeaders, (n, end), &mut call) {
                flow = self.fail(ctx, i, &e);
                break;
            }
            if let Some(local) = call.local.take() {
                flow = Flow::Respond(local_response(local));
                break;
            }
            if !call.dispatches.is_empty() {
                flow = self.dispatch(i, std::mem::take(&mut call.dispatches));
                break;
            }
        }
        *req.headers_mut() = call.request.take().unwrap_or_default();
        flow
    }

    /// Waits for filter `i`'s HTTP calls, then hands it the answers.
    fn dispatch(&self, i: usize, calls: Vec<Dispatch>) -> Flow {
        let chain = self.clone();
        Flow::wait(super::calls::fetch_all(calls), move |answers, ctx, req| {
            chain.answered(i, answers, ctx, req)
        })
    }

    /// `on_http_call_response` of filter `i` for each answer, then the chain goes on after
    /// it (unless it answered, or dispatched again).
    fn answered(
        &self,
        i: usize,
        answers: Vec<(u32, Option<CallResponse>)>,
        ctx: &mut Ctx<'_>,
        req: &mut Request<'_>,
    ) -> Flow {
        let Some(streams) = live(ctx) else {
            return Flow::Continue;
        };
        let mut call = request_call(ctx, req);
        let filter = &self.filters[i];
        let mut flow = None;
        for (token, answer) in answers {
            call.http_response = answer;
            let out = self.run_with(i, &streams, &mut call, |vm| {
                let root = vm.root(filter)?;
                vm.http_call_response(root, token)
            });
            if let Err(e) = out {
                flow = Some(self.fail(ctx, i, &e));
                break;
            }
            if let Some(local) = call.local.take() {
                flow = Some(Flow::Respond(local_response(local)));
                break;
            }
        }
        *req.headers_mut() = call.request.take().unwrap_or_default();
        match flow {
            Some(flow) => flow,
            None if !call.dispatches.is_empty() => self.dispatch(i, call.dispatches),
            None => self.request_headers(i + 1, ctx, req),
        }
    }

    fn failed(&self, ctx: &mut Ctx<'_>, i: usize, failure: &Failure) {
        tracing::error!(
            filter = %self.filters[i].name,
            request_id = ctx.request_id.as_str(),
            "Proxy-Wasm filter failed: {failure}; the request is answered 500."
        );
        if let Some(s) = ctx.extensions.get_mut::<Streams>() {
            s.failed = true;
        }
    }

    /// The contexts of a new request: a root context per filter config (made on first use
    /// in this thread's instance), then an HTTP context under it.
    fn open(&self, ctx: &mut Ctx<'_>) -> Result<(), (usize, Failure)> {
        let mut streams = Streams::default();
        let mut out = Ok(());
        for (i, f) in self.filters.iter().enumerate() {
            let made = vm::with(&f.module, None, |vm| {
                let root = vm.root(f)?;
                if vm.wants_ticker()
                    && let Ok(rt) = tokio::runtime::Handle::try_current()
                {
                    rt.spawn(vm::ticker(Arc::downgrade(&f.module), vm.generation));
                }
                Ok((vm.generation, vm.stream(root)?))
            });
            match made {
                Ok(s) => streams.each.push(s),
                Err(e) => {
                    streams.failed = true;
                    out = Err((i, e));
                    break;
                }
            }
        }
        ctx.extensions.insert(streams);
        out
    }
}

fn facts(ctx: &Ctx<'_>) -> Facts {
    Facts {
        client: ctx.client,
        local: ctx.local,
        request_id: ctx.request_id.header(),
        route: ctx.route.cloned(),
        service: ctx.service.cloned(),
    }
}

/// What request-side hooks see: the request's headers (moved in) and pseudo headers.
fn request_call(ctx: &Ctx<'_>, req: &mut Request<'_>) -> Call {
    let authority = ctx
        .host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let path = req.head().uri.path_and_query().map_or("/", |p| p.as_str());
    Call {
        pseudo: Pseudo {
            method: req.method().as_str().to_string(),
            path: path.to_string(),
            authority: authority.to_string(),
            scheme: ctx.scheme(),
        },
        facts: Some(facts(ctx)),
        request: Some(std::mem::take(req.headers_mut())),
        ..Call::default()
    }
}

/// HTTP calls are made for `on_request_headers` (and timers) only: one dispatched from
/// another hook is dropped, and said so.
fn drop_dispatches(filter: &Filter, call: &mut Call) {
    if !call.dispatches.is_empty() {
        call.dispatches.clear();
        tracing::warn!(filter = %filter.name, "HTTP calls are made only from on_request_headers and on_tick; this one is dropped");
    }
}

/// A response the gateway made, as a filter's local response.
fn local_of(r: crate::exchange::Response) -> LocalResponse {
    let (parts, body) = r.into_parts();
    LocalResponse {
        status: parts.status,
        headers: parts
            .headers
            .into_iter()
            .filter_map(|(k, v)| Some((k?, v)))
            .collect(),
        body: match body {
            crate::exchange::Body::Full(b) => b,
            _ => Bytes::new(),
        },
    }
}

fn local_response(local: LocalResponse) -> crate::exchange::Response {
    let mut r = respond::bytes(local.status, local.body);
    for (k, v) in local.headers {
        r.headers_mut().append(k, v);
    }
    r
}

/// The streams of a request whose chain has not failed.
fn live(ctx: &Ctx<'_>) -> Option<Streams> {
    ctx.extensions
        .get::<Streams>()
        .filter(|s| !s.failed)
        .cloned()
}

impl Plugin for FilterChain {
    fn name(&self) -> &str {
        "filter-chain"
    }

    /// After every plugin, in every phase.
    fn priority(&self) -> i32 {
        i32::MIN
    }

    fn phases(&self) -> Phases {
        Phases::ACCESS
            | Phases::REQUEST_BODY
            | Phases::RESPONSE_HEAD
            | Phases::RESPONSE_BODY
            | Phases::LOG
    }

    fn access(&self, ctx: &mut Ctx<'_>, req: &mut Request<'_>) -> Flow {
        if let Err((i, e)) = self.open(ctx) {
            return self.fail(ctx, i, &e);
        }
        self.request_headers(0, ctx, req)
    }

    fn request_body(&self, ctx: &mut Ctx<'_>, chunk: &mut Chunk) -> BodyFlow {
        let Some(streams) = live(ctx) else {
            return BodyFlow::Continue;
        };
        if ctx.body_length == Some(0) {
            return BodyFlow::Continue;
        }
        let mut call = Call {
            body: Some((buffer::HTTP_REQUEST_BODY, std::mem::take(&mut chunk.data))),
            facts: Some(facts(ctx)),
            ..Call::default()
        };
        let mut flow = BodyFlow::Continue;
        let mut resume = 0;
        for i in streams.request_body_from..self.filters.len() {
            let size = call.body.as_ref().map_or(0, |(_, b)| b.len());
            match self.run(i, &streams, Hook::RequestBody, (size, chunk.end), &mut call) {
                Err(e) => {
                    self.failed(ctx, i, &e);
                    flow = BodyFlow::Reject {
                        status: StatusCode::INTERNAL_SERVER_ERROR,
                        message: FAILED,
                    };
                    break;
                }
                Ok(Action::Pause) if !chunk.end => {
                    resume = i;
                    flow = BodyFlow::Buffer {
                        limit: self.limits.body_buffer,
                    };
                    break;
                }
                Ok(_) => {}
            }
            drop_dispatches(&self.filters[i], &mut call);
            if let Some(local) = call.local.take() {
                tracing::warn!(filter = %self.filters[i].name, status = %local.status, "a local response from on_request_body ends the request with its status; its body and headers are not sent");
                flow = BodyFlow::Reject {
                    status: local.status,
                    message: "Request refused by a filter",
                };
                break;
            }
        }
        chunk.data = call.body.take().map(|(_, b)| b).unwrap_or_default();
        if let Some(s) = ctx.extensions.get_mut::<Streams>() {
            s.request_body_from = resume;
        }
        flow
    }

    fn response_head(&self, ctx: &mut Ctx<'_>, resp: &mut ResponseHead<'_>) {
        let Some(streams) = live(ctx) else {
            return;
        };
        let mut call = Call {
            response: Some(std::mem::take(resp.headers_mut())),
            status: resp.status.as_u16(),
            facts: Some(facts(ctx)),
            ..Call::default()
        };
        let mut replace = None;
        for i in 0..self.filters.len() {
            let n = call.response.as_ref().map_or(0, HeaderMap::len);
            if let Err(e) = self.run(i, &streams, Hook::ResponseHeaders, (n, false), &mut call) {
                self.failed(ctx, i, &e);
                let body = respond::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    FAILED,
                    ctx.request_id.as_str(),
                );
                replace = Some(local_of(body));
                break;
            }
            drop_dispatches(&self.filters[i], &mut call);
            if let Some(local) = call.local.take() {
                replace = Some(local);
                break;
            }
        }
        *resp.headers_mut() = call.response.take().unwrap_or_default();
        // A local response (or a failure) replaces the response while its head is not out:
        // status and headers here, the body in `response_body`.
        if let Some(local) = replace {
            resp.status = local.status;
            let h = resp.headers_mut();
            h.clear();
            for (k, v) in local.headers {
                h.append(k, v);
            }
            if let Some(s) = ctx.extensions.get_mut::<Streams>() {
                s.replacement = Some(Some(local.body));
            }
        }
    }

    fn response_body(&self, ctx: &mut Ctx<'_>, chunk: &mut Chunk) -> BodyFlow {
        if let Some(s) = ctx.extensions.get_mut::<Streams>()
            && let Some(replacement) = s.replacement.as_mut()
        {
            chunk.data = replacement.take().unwrap_or_default();
            return BodyFlow::Continue;
        }
        let Some(streams) = live(ctx) else {
            return BodyFlow::Continue;
        };
        let mut call = Call {
            body: Some((buffer::HTTP_RESPONSE_BODY, std::mem::take(&mut chunk.data))),
            facts: Some(facts(ctx)),
            ..Call::default()
        };
        let mut flow = BodyFlow::Continue;
        let mut resume = 0;
        for i in streams.response_body_from..self.filters.len() {
            let size = call.body.as_ref().map_or(0, |(_, b)| b.len());
            match self.run(
                i,
                &streams,
                Hook::ResponseBody,
                (size, chunk.end),
                &mut call,
            ) {
                Err(e) => {
                    self.failed(ctx, i, &e);
                    flow = BodyFlow::Reject {
                        status: StatusCode::INTERNAL_SERVER_ERROR,
                        message: FAILED,
                    };
                    break;
                }
                Ok(Action::Pause) if !chunk.end => {
                    resume = i;
                    flow = BodyFlow::Buffer {
                        limit: self.limits.body_buffer,
                    };
                    break;
                }
                Ok(_) => {}
            }
            drop_dispatches(&self.filters[i], &mut call);
            if call.local.take().is_some() {
                tracing::warn!(filter = %self.filters[i].name, "a local response from on_response_body comes too late (the head is out); it is ignored");
            }
        }
        chunk.data = call.body.take().map(|(_, b)| b).unwrap_or_default();
        if let Some(s) = ctx.extensions.get_mut::<Streams>() {
            s.response_body_from = resume;
        }
        flow
    }

    fn log(&self, ctx: &Ctx<'_>, _entry: &LogEntry) {
        let Some(streams) = ctx.extensions.get::<Streams>() else {
            return;
        };
        for (f, &(generation, id)) in self.filters.iter().zip(&streams.each) {
            let done = vm::with(&f.module, Some(generation), |vm| {
                *vm.call() = Call {
                    filter: Some(f.name.clone()),
                    facts: Some(facts(ctx)),
                    ..Call::default()
                };
                let out = vm.finish(id);
                *vm.call() = Call::default();
                out
            });
            match done {
                Ok(()) | Err(Failure::Gone) => {}
                Err(e) => {
                    tracing::error!(filter = %f.name, "Proxy-Wasm filter failed in its log hooks: {e}")
                }
            }
        }
    }
}
