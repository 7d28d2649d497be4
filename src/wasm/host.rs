//! The host side of the ABI: what a filter's instance carries (`HostState`), what one hook
//! call may see and change (`Call`), and the imports of module `env` (`proxy_*`) and of WASI
//! preview 1 that filters link against.
//!
//! ```text
//! chain ─▶ Call (request/response headers moved in, body, config, request facts)
//!       ─▶ guest hook ─▶ host functions read/change the Call through Caller<HostState>
//!       ─▶ chain takes the Call's parts back (a local response, HTTP calls to make)
//! ```
//!
//! What outlives one call stays in `HostState`: the guest's memory and allocator, the HTTP
//! call tokens handed out, the root contexts' timers.
//!
//! Data for the guest is copied into memory it allocates (`malloc` or
//! `proxy_on_memory_allocate`), and the guest owns it from then on. Every import the module
//! names is defined: those the host does not implement answer a status the Rust SDK accepts
//! (or, for WASI, `ENOSYS`), so that an unused import never stops a module from loading.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use wasmtime::{
    Caller, Engine, ExternType, Linker, Memory, Module, StoreLimits, TypedFunc, Val, ValType,
};

use super::abi::{self, buffer, map, status};

/// `proxy_buffer_type_t` and `proxy_map_type_t` of an HTTP call's answer.
const HTTP_CALL_RESPONSE_BODY: i32 = 4;
const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
use super::{maps, shared};
use crate::exchange::Identity;

/// What an instance's store holds.
pub struct HostState {
    pub limits: StoreLimits,
    pub memory: Option<Memory>,
    /// The guest's allocator, for data the host hands it.
    pub malloc: Option<TypedFunc<i32, i32>>,
    pub call: Call,
    /// The module's name (the first filter name it loaded as), for its logs.
    pub module: std::sync::Arc<str>,
    /// The last HTTP call token handed out (unique per instance).
    pub last_token: u32,
    /// The root contexts' timers.
    pub ticks: Vec<Tick>,
}

/// A root context's timer (`proxy_set_tick_period_milliseconds`).
pub struct Tick {
    pub root: u32,
    pub period: std::time::Duration,
    pub next: std::time::Instant,
}

/// What the running hook may see and change.
#[derive(Default)]
pub struct Call {
    /// The filter whose hook runs (for logs and `plugin_name`).
    pub filter: Option<std::sync::Arc<str>>,
    pub root_id: u32,
    /// `PLUGIN_CONFIGURATION`, in `proxy_on_configure`.
    pub config: Bytes,
    /// The request's headers, in request-side hooks.
    pub request: Option<HeaderMap>,
    pub pseudo: Pseudo,
    /// The response's headers and status, in `proxy_on_response_headers`.
    pub response: Option<HeaderMap>,
    pub status: u16,
    /// The body piece of a body hook: which body, and its bytes.
    pub body: Option<(i32, Bytes)>,
    pub facts: Option<Facts>,
    /// Set by `proxy_send_local_response`.
    pub local: Option<LocalResponse>,
    /// HTTP calls the hook dispatched (`proxy_http_call`), to make once it returned.
    pub dispatches: Vec<Dispatch>,
    /// The answer `proxy_on_http_call_response` reads (`None`: the call failed).
    pub http_response: Option<CallResponse>,
}

/// An HTTP call a filter dispatched.
pub struct Dispatch {
    pub token: u32,
    /// `http://<upstream><:path>`: the upstream named as Kong names it, `host:port`.
    pub url: String,
    pub method: http::Method,
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub timeout: std::time::Duration,
}

/// The answer to a dispatched call.
pub struct CallResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The request's pseudo headers, as the guest sees them in the request map.
#[derive(Default)]
pub struct Pseudo {
    pub method: String,
    pub path: String,
    pub authority: String,
    pub scheme: &'static str,
}

/// What properties are answered from.
#[derive(Clone)]
pub struct Facts {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub request_id: HeaderValue,
    pub route: Option<Identity>,
    pub service: Option<Identity>,
}

/// An answer a filter sent with `proxy_send_local_response`.
pub struct LocalResponse {
    pub status: StatusCode,
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    pub body: Bytes,
}

type Cx<'a> = Caller<'a, HostState>;
type Res<T> = wasmtime::Result<T>;

// === Guest memory ===

fn memory(cx: &Cx<'_>) -> Res<Memory> {
    cx.data()
        .memory
        .ok_or_else(|| wasmtime::Error::msg("the filter exports no memory"))
}

/// `len` bytes at `ptr` of the guest's memory, copied out.
fn read(cx: &mut Cx<'_>, ptr: i32, len: i32) -> Res<Vec<u8>> {
    let mem = memory(cx)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    mem.data(&*cx)
        .get(ptr..)
        .and_then(|d| d.get(..len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| wasmtime::Error::msg("the filter passed memory out of bounds"))
}

fn read_str(cx: &mut Cx<'_>, ptr: i32, len: i32) -> Res<String> {
    Ok(String::from_utf8_lossy(&read(cx, ptr, len)?).into_owned())
}

fn write(cx: &mut Cx<'_>, ptr: i32, bytes: &[u8]) -> Res<()> {
    let mem = memory(cx)?;
    mem.write(&mut *cx, ptr as u32 as usize, bytes)
        .map_err(|_| wasmtime::Error::msg("the filter passed memory out of bounds"))
}

fn write_u32(cx: &mut Cx<'_>, ptr: i32, v: u32) -> Res<()> {
    write(cx, ptr, &v.to_le_bytes())
}

/// Copies `bytes` into memory the guest allocates and writes its address and length to
/// the two out-pointers.
fn give(cx: &mut Cx<'_>, bytes: &[u8], ret_ptr: i32, ret_len: i32) -> Res<i32> {
    if bytes.is_empty() {
        write_u32(cx, ret_ptr, 0)?;
        write_u32(cx, ret_len, 0)?;
        return Ok(status::OK);
    }
    let malloc = cx
        .data()
        .malloc
        .clone()
        .ok_or_else(|| wasmtime::Error::msg("the filter exports no allocator"))?;
    let p = malloc.call(&mut *cx, bytes.len() as i32)?;
    if p == 0 {
        return Ok(status::INTERNAL_FAILURE);
    }
    write(cx, p, bytes)?;
    write_u32(cx, ret_ptr, p as u32)?;
    write_u32(cx, ret_len, bytes.len() as u32)?;
    Ok(status::OK)
}

fn filter_name(cx: &Cx<'_>) -> std::sync::Arc<str> {
    let d = cx.data();
    d.call.filter.clone().unwrap_or_else(|| d.module.clone())
}

// === The linker ===

/// A linker with every import `module` names: the host's functions, then stubs.
pub fn linker(engine: &Engine, module: &Module) -> Res<Linker<HostState>> {
    let mut l = Linker::new(engine);
    // Stubs first, for every import; the host's own functions then shadow theirs.
    l.allow_shadowing(true);
    add_stubs(&mut l, module)?;
    add_basics(&mut l)?;
    add_buffers(&mut l)?;
    add_maps(&mut l)?;
    add_map_writes(&mut l)?;
    add_stream(&mut l)?;
    add_shared(&mut l)?;
    add_metrics(&mut l)?;
    for ns in ["wasi_snapshot_preview1", "wasi_unstable"] {
        add_wasi(&mut l, ns)?;
    }
    Ok(l)
}

fn add_basics(l: &mut Linker<HostState>) -> Res<()> {
    l.func_wrap(
        "env",
        "proxy_log",
        |mut cx: Cx<'_>, level: i32, p: i32, n: i32| {
            let message = read_str(&mut cx, p, n)?;
            abi::log(level, &filter_name(&cx), &message);
            Ok(status::OK)
        },
    )?;
    l.func_wrap("env", "proxy_get_log_level", |mut cx: Cx<'_>, ret: i32| {
        write_u32(&mut cx, ret, 2)?;
        Ok(status::OK)
    })?;
    l.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut cx: Cx<'_>, ret: i32| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            write(&mut cx, ret, &now.to_le_bytes())?;
            Ok(status::OK)
        },
    )?;
    // Per root context; the worker's ticker (`vm::tick`) calls `proxy_on_tick`.
    l.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut cx: Cx<'_>, period: i32| {
            let state = cx.data_mut();
            let root = state.call.root_id;
            state.ticks.retain(|t| t.root != root);
            if period > 0 {
                let period = std::time::Duration::from_millis(u64::from(period as u32));
                state.ticks.push(Tick {
                    root,
                    period,
                    next: std::time::Instant::now() + period,
                });
            }
            status::OK
        },
    )?;
    l.func_wrap("env", "proxy_set_effective_context", |_: i32| status::OK)?;
    l.func_wrap("env", "proxy_done", || status::OK)?;
    l.func_wrap(
        "env",
        "proxy_get_property",
        |mut cx: Cx<'_>, p: i32, n: i32, ret_ptr: i32, ret_len: i32| {
            let path = read(&mut cx, p, n)?;
            match property(cx.data(), &path) {
                Some(value) => give(&mut cx, value.as_bytes(), ret_ptr, ret_len),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    // Properties are read-only here; setting one is accepted and changes nothing.
    l.func_wrap(
        "env",
        "proxy_set_property",
        |_: i32, _: i32, _: i32, _: i32| status::OK,
    )?;
    Ok(())
}

/// A property's value, as Kong gives them (text), for `path` in the SDK's NUL-joined or
/// Kong's dotted form.
fn property(state: &HostState, path: &[u8]) -> Option<String> {
    let path = String::from_utf8_lossy(path).replace('\0', ".");
    let call = &state.call;
    let facts = call.facts.as_ref();
    let p = &call.pseudo;
    // The request's pseudo headers are known in request hooks only: elsewhere NOT_FOUND.
    let known = !p.method.is_empty();
    Some(match path.as_str() {
        "plugin_name" => call.filter.as_deref()?.to_string(),
        "plugin_root_id" => call.root_id.to_string(),
        "request.path" if known => p.path.clone(),
        "request.url_path" if known => p.path.split('?').next().unwrap_or_default().to_string(),
        "request.query" if known => p.path.split_once('?')?.1.to_string(),
        "request.method" if known => p.method.clone(),
        "request.host" if known => p.authority.clone(),
        "request.scheme" if known => p.scheme.to_string(),
        "request.protocol" => "HTTP/1.1".to_string(),
        "request.id" => facts?.request_id.to_str().ok()?.to_string(),
        "response.code" if call.status != 0 => call.status.to_string(),
        "source.address" => facts?.client.ip().to_string(),
        "source.port" => facts?.client.port().to_string(),
        "destination.address" => facts?.local.ip().to_string(),
        "destination.port" => facts?.local.port().to_string(),
        "route_name" => facts?.route.as_ref()?.name.to_string(),
        "kong.route_id" => facts?.route.as_ref()?.id.to_string(),
        "service_name" | "cluster_name" => facts?.service.as_ref()?.name.to_string(),
        "kong.service_id" => facts?.service.as_ref()?.id.to_string(),
        other => {
            let (map, name) = if let Some(n) = other.strip_prefix("request.headers.") {
                (call.request.as_ref()?, n)
            } else {
                (
                    call.response.as_ref()?,
                    other.strip_prefix("response.headers.")?,
                )
            };
            map.get(name)?.to_str().ok()?.to_string()
        }
    })
}

fn add_buffers(l: &mut Linker<HostState>) -> Res<()> {
    l.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut cx: Cx<'_>, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_len: i32| {
            let Some(data) = buffer_of(&cx.data().call, kind) else {
                return Ok(status::NOT_FOUND);
            };
            let (start, max) = (u64::from(start as u32), u64::from(max as u32));
            let len = data.len() as u64;
            let from = start.min(len) as usize;
            let to = start.saturating_add(max).min(len) as usize;
            give(&mut cx, &data[from..to], ret_ptr, ret_len)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut cx: Cx<'_>, kind: i32, ret_len: i32, ret_flags: i32| {
            let Some(len) = buffer_of(&cx.data().call, kind).map(|d| d.len()) else {
                return Ok(status::NOT_FOUND);
            };
            write_u32(&mut cx, ret_len, len as u32)?;
            write_u32(&mut cx, ret_flags, 0)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut cx: Cx<'_>, kind: i32, start: i32, size: i32, p: i32, n: i32| {
            let new = read(&mut cx, p, n)?;
            let call = &mut cx.data_mut().call;
            let Some((k, data)) = call.body.as_mut().filter(|(k, _)| *k == kind) else {
                return Ok(status::NOT_FOUND);
            };
            debug_assert_eq!(*k, kind);
            let len = data.len();
            let from = (start as u32 as usize).min(len);
            let to = from.saturating_add(size as u32 as usize).min(len);
            let mut out = Vec::with_capacity(len - (to - from) + new.len());
            out.extend_from_slice(&data[..from]);
            out.extend_from_slice(&new);
            out.extend_from_slice(&data[to..]);
            *data = Bytes::from(out);
            Ok(status::OK)
        },
    )?;
    Ok(())
}

fn buffer_of(call: &Call, kind: i32) -> Option<Bytes> {
    match kind {
        buffer::PLUGIN_CONFIGURATION => Some(call.config.clone()),
        buffer::VM_CONFIGURATION => Some(Bytes::new()),
        HTTP_CALL_RESPONSE_BODY => call.http_response.as_ref().map(|r| r.body.clone()),
        buffer::HTTP_REQUEST_BODY | buffer::HTTP_RESPONSE_BODY => call
            .body
            .as_ref()
            .filter(|(k, _)| *k == kind)
            .map(|(_, d)| d.clone()),
        _ => None,
    }
}

/// The header map `kind` while the running hook may see it.
fn map_of(call: &mut Call, kind: i32) -> Option<&mut HeaderMap> {
    match kind {
        map::HTTP_REQUEST_HEADERS => call.request.as_mut(),
        map::HTTP_RESPONSE_HEADERS => call.response.as_mut(),
        HTTP_CALL_RESPONSE_HEADERS => call.http_response.as_mut().map(|r| &mut r.headers),
        _ => None,
    }
}

/// The map `kind` serialised, pseudo headers first; an empty map when it is not there
/// (the SDK accepts only OK here).
fn pairs_of(call: &mut Call, kind: i32) -> Vec<u8> {
    let status = match kind {
        HTTP_CALL_RESPONSE_HEADERS => call.http_response.as_ref().map_or(0, |r| r.status),
        _ => call.status,
    }
    .to_string();
    let pseudo: Vec<(&str, &str)> = match kind {
        map::HTTP_REQUEST_HEADERS if call.request.is_some() => vec![
            (":method", call.pseudo.method.as_str()),
            (":path", call.pseudo.path.as_str()),
            (":authority", call.pseudo.authority.as_str()),
            (":scheme", call.pseudo.scheme),
        ],
        map::HTTP_RESPONSE_HEADERS if call.response.is_some() => vec![(":status", &status)],
        HTTP_CALL_RESPONSE_HEADERS if call.http_response.is_some() => {
            vec![(":status", &status)]
        }
        _ => Vec::new(),
    };
    let empty = HeaderMap::new();
    maps::serialize(&pseudo, map_of_ref(call, kind).unwrap_or(&empty))
}

/// A pseudo header's value (`:path`, `:status`, ...).
fn pseudo_value(call: &Call, kind: i32, key: &str) -> Option<String> {
    match (kind, key) {
        (map::HTTP_REQUEST_HEADERS, ":method") => Some(call.pseudo.method.clone()),
        (map::HTTP_REQUEST_HEADERS, ":path") => Some(call.pseudo.path.clone()),
        (map::HTTP_REQUEST_HEADERS, ":authority") => Some(call.pseudo.authority.clone()),
        (map::HTTP_REQUEST_HEADERS, ":scheme") => Some(call.pseudo.scheme.to_string()),
        (map::HTTP_RESPONSE_HEADERS, ":status") => Some(call.status.to_string()),
        (HTTP_CALL_RESPONSE_HEADERS, ":status") => {
            call.http_response.as_ref().map(|r| r.status.to_string())
        }
        _ => None,
    }
    .filter(|_| map_of_ref(call, kind).is_some())
}

fn map_of_ref(call: &Call, kind: i32) -> Option<&HeaderMap> {
    match kind {
        map::HTTP_REQUEST_HEADERS => call.request.as_ref(),
        map::HTTP_RESPONSE_HEADERS => call.response.as_ref(),
        HTTP_CALL_RESPONSE_HEADERS => call.http_response.as_ref().map(|r| &r.headers),
        _ => None,
    }
}

/// The header-map imports that read a map.
fn add_maps(l: &mut Linker<HostState>) -> Res<()> {
    l.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut cx: Cx<'_>, kind: i32, ret_ptr: i32, ret_len: i32| {
            let bytes = pairs_of(&mut cx.data_mut().call, kind);
            give(&mut cx, &bytes, ret_ptr, ret_len)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut cx: Cx<'_>, kind: i32, ret: i32| {
            let n = pairs_of(&mut cx.data_mut().call, kind).len();
            write_u32(&mut cx, ret, n as u32)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut cx: Cx<'_>, kind: i32, kp: i32, kn: i32, ret_ptr: i32, ret_len: i32| {
            let key = read_str(&mut cx, kp, kn)?.to_ascii_lowercase();
            let call = &cx.data().call;
            let value = match pseudo_value(call, kind, &key) {
                Some(v) => Some(v),
                None => map_of_ref(call, kind)
                    .and_then(|m| m.get(key.as_str()))
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            };
            match value {
                Some(v) => give(&mut cx, v.as_bytes(), ret_ptr, ret_len),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    Ok(())
}

/// The header-map imports that change a map.
fn add_map_writes(l: &mut Linker<HostState>) -> Res<()> {
    l.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut cx: Cx<'_>, kind: i32, p: i32, n: i32| {
            let bytes = read(&mut cx, p, n)?;
            let Some(pairs) = maps::deserialize(&bytes) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Some(m) = map_of(&mut cx.data_mut().call, kind) else {
                return Ok(status::NOT_FOUND);
            };
            m.clear();
            for (k, v) in pairs.into_iter().filter(|(k, _)| !k.starts_with(b":")) {
                if let Some((k, v)) = maps::header(k, v) {
                    m.append(k, v);
                }
            }
            Ok(status::OK)
        },
    )?;
    for (name, replace) in [
        ("proxy_add_header_map_value", false),
        ("proxy_replace_header_map_value", true),
    ] {
        l.func_wrap(
            "env",
            name,
            move |mut cx: Cx<'_>, kind: i32, kp: i32, kn: i32, vp: i32, vn: i32| {
                let (key, value) = (read(&mut cx, kp, kn)?, read(&mut cx, vp, vn)?);
                let Some(m) = map_of(&mut cx.data_mut().call, kind) else {
                    return Ok(status::NOT_FOUND);
                };
                let Some((k, v)) = maps::header(&key, &value) else {
                    return Ok(status::BAD_ARGUMENT);
                };
                if replace {
                    m.insert(k, v);
                } else {
                    m.append(k, v);
                }
                Ok(status::OK)
            },
        )?;
    }
    l.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut cx: Cx<'_>, kind: i32, kp: i32, kn: i32| {
            let key = read(&mut cx, kp, kn)?;
            if let Some(m) = map_of(&mut cx.data_mut().call, kind)
                && let Ok(name) = http::HeaderName::from_bytes(&key)
            {
                m.remove(name);
            }
            Ok(status::OK)
        },
    )?;
    Ok(())
}

fn add_stream(l: &mut Linker<HostState>) -> Res<()> {
    // Nothing pauses across an await yet (no http calls), so there is nothing to resume.
    l.func_wrap("env", "proxy_continue_stream", |_: i32| status::OK)?;
    l.func_wrap("env", "proxy_close_stream", |_: i32| status::OK)?;
    l.func_wrap(
        "env",
        "proxy_http_call",
        |mut cx: Cx<'_>,
         up: i32,
         up_len: i32,
         hp: i32,
         hn: i32,
         bp: i32,
         bn: i32,
         _tp: i32,
         _tn: i32,
         timeout_ms: i32,
         ret_token: i32| {
            let upstream = read_str(&mut cx, up, up_len)?;
            let raw = read(&mut cx, hp, hn)?;
            let body = read(&mut cx, bp, bn)?;
            let Some(mut d) = dispatch(&upstream, &raw, timeout_ms) else {
                return Ok(status::BAD_ARGUMENT);
            };
            d.body = Bytes::from(body);
            let state = cx.data_mut();
            state.last_token = state.last_token.wrapping_add(1).max(1);
            d.token = state.last_token;
            let token = d.token;
            state.call.dispatches.push(d);
            write_u32(&mut cx, ret_token, token)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut cx: Cx<'_>,
         code: i32,
         _dp: i32,
         _dn: i32,
         bp: i32,
         bn: i32,
         hp: i32,
         hn: i32,
         _grpc: i32| {
            let body = read(&mut cx, bp, bn)?;
            let raw = read(&mut cx, hp, hn)?;
            let Some(pairs) = maps::deserialize(&raw) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Ok(status) = StatusCode::from_u16(code as u32 as u16) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let headers = pairs
                .into_iter()
                .filter_map(|(k, v)| maps::header(k, v))
                .collect();
            cx.data_mut().call.local = Some(LocalResponse {
                status,
                headers,
                body: Bytes::from(body),
            });
            Ok(status::OK)
        },
    )?;
    Ok(())
}

/// A call to `upstream` (`host[:port]`) with the serialised `headers` (`:method`, `:path`
/// and `:authority` required, as in Kong).
fn dispatch(upstream: &str, headers: &[u8], timeout_ms: i32) -> Option<Dispatch> {
    let pairs = maps::deserialize(headers)?;
    let pseudo = |name: &[u8]| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    let (method, path) = (pseudo(b":method")?, pseudo(b":path")?);
    pseudo(b":authority")?;
    if upstream.is_empty() || upstream.contains(['/', ' ']) {
        return None;
    }
    let headers = pairs
        .iter()
        .filter(|(k, _)| !k.starts_with(b":"))
        .filter_map(|(k, v)| maps::header(k, v))
        .collect();
    Some(Dispatch {
        token: 0,
        url: format!("http://{upstream}{path}"),
        method: http::Method::from_bytes(method.as_bytes()).ok()?,
        headers,
        body: Bytes::new(),
        timeout: std::time::Duration::from_millis(u64::from(timeout_ms.max(1) as u32))
            .min(std::time::Duration::from_secs(60)),
    })
}

fn add_shared(l: &mut Linker<HostState>) -> Res<()> {
    l.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut cx: Cx<'_>, kp: i32, kn: i32, ret_ptr: i32, ret_len: i32, ret_cas: i32| {
            let key = read(&mut cx, kp, kn)?;
            let Some((value, cas)) = shared::get(&key) else {
                return Ok(status::NOT_FOUND);
            };
            write_u32(&mut cx, ret_cas, cas)?;
            give(&mut cx, &value, ret_ptr, ret_len)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut cx: Cx<'_>, kp: i32, kn: i32, vp: i32, vn: i32, cas: i32| {
            let (key, value) = (read(&mut cx, kp, kn)?, read(&mut cx, vp, vn)?);
            Ok(shared::set(&key, &value, cas as u32))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut cx: Cx<'_>, np: i32, nn: i32, ret: i32| {
            let name = read(&mut cx, np, nn)?;
            write_u32(&mut cx, ret, shared::register_queue(&name))?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut cx: Cx<'_>, _vp: i32, _vn: i32, np: i32, nn: i32, ret: i32| {
            let name = read(&mut cx, np, nn)?;
            match shared::resolve_queue(&name) {
                Some(id) => write_u32(&mut cx, ret, id).map(|_| status::OK),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut cx: Cx<'_>, id: i32, vp: i32, vn: i32| {
            let value = read(&mut cx, vp, vn)?;
            Ok(shared::enqueue(id as u32, &value))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut cx: Cx<'_>, id: i32, ret_ptr: i32, ret_len: i32| match shared::dequeue(id as u32) {
            Ok(v) => give(&mut cx, &v, ret_ptr, ret_len),
            Err(s) => Ok(s),
        },
    )?;
    Ok(())
}

fn add_metrics(l: &mut Linker<HostState>) -> Res<()> {
    l.func_wrap(
        "env",
        "proxy_define_metric",
        |mut cx: Cx<'_>, kind: i32, np: i32, nn: i32, ret: i32| {
            if !(0..=2).contains(&kind) {
                return Ok(status::BAD_ARGUMENT);
            }
            let name = read_str(&mut cx, np, nn)?;
            let id = shared::define_metric(kind, &filter_name(&cx), &name);
            write_u32(&mut cx, ret, id)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap("env", "proxy_increment_metric", |id: i32, delta: i64| {
        shared::update_metric(id as u32, delta, true)
    })?;
    l.func_wrap("env", "proxy_record_metric", |id: i32, value: i64| {
        shared::update_metric(id as u32, value, false)
    })?;
    l.func_wrap(
        "env",
        "proxy_get_metric",
        |mut cx: Cx<'_>, id: i32, ret: i32| match shared::get_metric(id as u32) {
            Some(v) => write(&mut cx, ret, &v.to_le_bytes()).map(|_| status::OK),
            None => Ok(status::NOT_FOUND),
        },
    )?;
    Ok(())
}

/// WASI errno values.
const WASI_SUCCESS: i32 = 0;
const WASI_BADF: i32 = 8;
const WASI_INVAL: i32 = 28;
const WASI_NOSYS: i32 = 52;

/// The WASI preview 1 functions real filters pull in (Rust std, TinyGo): no arguments, no
/// environment, clocks, randomness, and stdout/stderr to the log.
fn add_wasi(l: &mut Linker<HostState>, ns: &str) -> Res<()> {
    l.func_wrap(
        ns,
        "fd_write",
        |mut cx: Cx<'_>, fd: i32, iovs: i32, n: i32, ret: i32| {
            if fd != 1 && fd != 2 {
                return Ok(WASI_BADF);
            }
            let mut text = Vec::new();
            for i in 0..n.clamp(0, 1024) {
                let iov = read(&mut cx, iovs.wrapping_add(i * 8), 8)?;
                let p = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                text.extend_from_slice(&read(&mut cx, p, len)?);
            }
            let message = String::from_utf8_lossy(&text);
            abi::log(
                if fd == 1 { 2 } else { 4 },
                &filter_name(&cx),
                message.trim_end(),
            );
            write_u32(&mut cx, ret, text.len() as u32)?;
            Ok(WASI_SUCCESS)
        },
    )?;
    for name in ["environ_sizes_get", "args_sizes_get"] {
        l.func_wrap(ns, name, |mut cx: Cx<'_>, count: i32, size: i32| {
            write_u32(&mut cx, count, 0)?;
            write_u32(&mut cx, size, 0)?;
            Ok(WASI_SUCCESS)
        })?;
    }
    for name in ["environ_get", "args_get"] {
        l.func_wrap(ns, name, |_: i32, _: i32| WASI_SUCCESS)?;
    }
    l.func_wrap(
        ns,
        "clock_time_get",
        |mut cx: Cx<'_>, id: i32, _precision: i64, ret: i32| {
            let nanos = match id {
                0 => SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64,
                1 => monotonic_nanos(),
                _ => return Ok(WASI_INVAL),
            };
            write(&mut cx, ret, &nanos.to_le_bytes())?;
            Ok(WASI_SUCCESS)
        },
    )?;
    l.func_wrap(ns, "random_get", |mut cx: Cx<'_>, p: i32, n: i32| {
        if !(0..=65536).contains(&n) {
            return Ok(WASI_INVAL);
        }
        let mut bytes = vec![0u8; n as usize];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| wasmtime::Error::msg("no randomness"))?;
        write(&mut cx, p, &bytes)?;
        Ok(WASI_SUCCESS)
    })?;
    l.func_wrap(ns, "proc_exit", |code: i32| -> Res<()> {
        wasmtime::bail!("the filter called proc_exit({code})")
    })?;
    l.func_wrap(ns, "sched_yield", || WASI_SUCCESS)?;
    Ok(())
}

fn monotonic_nanos() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// A stub for every import `module` names (the host's own functions then shadow theirs), so
/// that those the host does not implement still link: `proxy_*` functions (gRPC calls,
/// foreign functions, ...) answer INTERNAL_FAILURE, which the SDK turns into an error; WASI
/// functions answer ENOSYS. An import from another module, or of something that is not a
/// function, is a load error.
fn add_stubs(l: &mut Linker<HostState>, module: &Module) -> Res<()> {
    for import in module.imports() {
        let (ns, name) = (import.module(), import.name());
        let ExternType::Func(ty) = import.ty() else {
            wasmtime::bail!("imports {ns}::{name}, which is not a function");
        };
        let answer = match ns {
            "env" => status::INTERNAL_FAILURE,
            "wasi_snapshot_preview1" | "wasi_unstable" => WASI_NOSYS,
            _ => wasmtime::bail!("imports {ns}::{name}, which the host does not provide"),
        };
        if !ty.results().all(|r| matches!(r, ValType::I32)) || ty.results().len() > 1 {
            wasmtime::bail!("imports {ns}::{name} with a signature the host does not know");
        }
        let label = format!("{ns}::{name}");
        l.func_new(ns, name, ty.clone(), move |cx, _params, results| {
            tracing::debug!(filter = %filter_name(&cx), "{label} is not implemented by the host");
            if let Some(r) = results.first_mut() {
                *r = Val::I32(answer);
            }
            Ok(())
        })?;
    }
    Ok(())
}
