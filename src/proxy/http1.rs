//! HTTP/1.x on the wire, for both legs: heads parsed with httparse straight into `http` types
//! (header values are slices of the read buffer, never copies; the hop-by-hop headers are
//! read for framing and connection management and kept out of the map), heads written from
//! them, and body framing (Content-Length, chunked, until close) decoded in place. A
//! response head nothing reads (`RawHeaders`) skips the map: its lines go back out as they
//! came, less the hop-by-hop ones and the gateway's own.
//!
//! bytes ─▶ `parse_request` / `parse_response` ─▶ head + `Decoder` ─▶ body frames
//! head + body length ─▶ `write_request_head` / `write_response_head` ─▶ bytes

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

/// Header lines a request or response may carry (nginx allows about as many in its 32 KiB).
pub const MAX_HEADERS: usize = 128;
/// The largest request or response head (nginx: `large_client_header_buffers 4 8k`).
pub const MAX_HEAD: usize = 32 * 1024;
/// The longest request line before the answer is 414.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// The longest chunk-size line, extensions included (Node's limit since CVE-2024-22019:
/// without one, a peer could stream extensions for ever without sending a byte of body).
pub const MAX_CHUNK_LINE: u16 = 16 * 1024;
/// The longest trailer section of a chunked body.
pub const MAX_TRAILERS: u16 = MAX_HEAD as u16;

/// Why a request head is refused; each maps to the status the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("Bad request")]
    Malformed,
    #[error("Request-URI too long")]
    UriTooLong,
    #[error("Request header or cookie too large")]
    HeadTooLarge,
    #[error("Content-Length and Transfer-Encoding together are ambiguous")]
    Smuggling,
    #[error("Transfer-Encoding other than chunked is not supported")]
    UnknownEncoding,
    #[error("HTTP version not supported")]
    Version,
    /// Some of a head came, not all of it, within the client header timeout.
    #[error("Request timeout")]
    Timeout,
}

impl RequestError {
    pub fn status(self) -> StatusCode {
        match self {
            RequestError::Malformed | RequestError::Smuggling => StatusCode::BAD_REQUEST,
            RequestError::UriTooLong => StatusCode::URI_TOO_LONG,
            RequestError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            RequestError::UnknownEncoding => StatusCode::NOT_IMPLEMENTED,
            RequestError::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            RequestError::Timeout => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// A peer broke HTTP/1.1 framing.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{0}")]
pub struct ProtoError(pub &'static str);

impl From<ProtoError> for std::io::Error {
    fn from(e: ProtoError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e.0)
    }
}

/// A parsed request head.
pub struct RequestHead {
    pub parts: http::request::Parts,
    pub decoder: Decoder,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub wire: Wire,
}

/// What a head's wire form tells beyond its `http` types.
pub struct Wire {
    /// The head as received. The request line and header values are slices of it, so the
    /// values the gateway forwards (the path, the host) can share its bytes, not copy them.
    pub head: Bytes,
    /// The head has a header that the gateway sets itself (X-Forwarded-*, Via, ...): the
    /// peer's must be read or replaced, where otherwise the gateway's are only added.
    pub gateway_set: bool,
}

/// A parsed response head.
pub struct ResponseHead {
    pub parts: http::response::Parts,
    pub decoder: Decoder,
    pub keep_alive: bool,
    /// As `Wire::gateway_set`.
    pub gateway_set: bool,
    /// The header lines as they came, when asked for (`parse_response`); `parts.headers` is
    /// empty then.
    pub raw: Option<RawHeaders>,
}

/// Where each header's name and value lie in the head, so that they can be sliced out of
/// the frozen buffer once httparse's borrow ends.
#[derive(Clone, Copy)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

fn offset(base: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    (start, start + part.len())
}

/// Most heads carry far fewer headers than `MAX_HEADERS`; more spill to the heap.
type Spans = smallvec::SmallVec<[Span; 32]>;

fn record(base: &[u8], headers: &[httparse::Header<'_>], spans: &mut Spans) {
    spans.extend(headers.iter().map(|h| Span {
        name: offset(base, h.name.as_bytes()),
        value: offset(base, h.value),
    }));
}

/// httparse's header slots, left uninitialised: zeroing `MAX_HEADERS` of them on every
/// parse cost more than the parse itself.
fn header_slots<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Room for the headers the gateway adds on either leg (X-Forwarded-*, Via, the request id
/// and latency headers), so that adding them never regrows the map.
const ADDED_HEADERS: usize = 12;

/// What the HTTP/1 layer itself reads from a head and keeps out of the map: framing and
/// connection management. Gathered in the pass that builds the map, instead of a lookup
/// each afterwards.
struct Facts {
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive` (what an HTTP/1.0 peer must say to keep the connection).
    keep_alive: bool,
    /// The one Content-Length, or `Err` for a bad or conflicting one.
    content_length: Result<Option<u64>, ProtoError>,
    /// Transfer-Encoding: `Some(true)` when its last coding is chunked, `Some(false)` for
    /// any other, `None` when absent.
    chunked: Option<bool>,
    /// `Expect: 100-continue`.
    expect_continue: bool,
    host: bool,
    /// More than one Host line (RFC 9112 §3.2: 400).
    hosts: bool,
    /// A header the gateway itself sets on what it forwards (`headers::is_gateway_set`).
    gateway_set: bool,
}

impl Facts {
    fn keep_alive(&self, version: Version) -> bool {
        if version == Version::HTTP_11 {
            !self.close
        } else {
            self.keep_alive
        }
    }

    /// The one Content-Length of a message; repeated equal values are tolerated (RFC 9112
    /// §6.3).
    fn content_length(&mut self, value: &[u8]) {
        let Ok(found) = self.content_length else {
            return;
        };
        let mut found = found;
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            let n = match std::str::from_utf8(part)
                .ok()
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            {
                Some(p) => p.parse::<u64>().ok(),
                None => None,
            };
            match n {
                Some(n) if found.is_none_or(|f| f == n) => found = Some(n),
                Some(_) => {
                    self.content_length = Err(ProtoError("conflicting Content-Length values"));
                    return;
                }
                None => {
                    self.content_length = Err(ProtoError("bad Content-Length"));
                    return;
                }
            }
        }
        self.content_length = Ok(found);
    }
}

/// What a header is to the HTTP/1 layer, read once per header by `Facts::observe`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Hop-by-hop (RFC 9110 §7.6.1): what it says is for this connection, and it is not
    /// passed on. `Proxy` too (httpoxy).
    Hop,
    ContentLength,
    Date,
    Server,
    /// A name the gateway itself sets (`headers::is_gateway_set`).
    GatewaySet,
    Other,
}

impl Facts {
    fn new() -> Facts {
        Facts {
            close: false,
            keep_alive: false,
            content_length: Ok(None),
            chunked: None,
            expect_continue: false,
            host: false,
            hosts: false,
            gateway_set: false,
        }
    }

    /// Reads what the HTTP/1 layer needs from one header, by its name in any case. Tokens of
    /// a Connection header other than close and keep-alive name more hop-by-hop headers
    /// (rare): they go to `named`. `TE: trailers` is the one TE a request may pass on
    /// (`keep_te_trailers`).
    fn observe<'h>(
        &mut self,
        name: &[u8],
        value: &'h [u8],
        keep_te_trailers: bool,
        named: &mut smallvec::SmallVec<[&'h [u8]; 2]>,
    ) -> Role {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        // A length switch first: most names are none of these, and are told so in a compare.
        match name.len() {
            2 if is("te") => {
                if keep_te_trailers && value.eq_ignore_ascii_case(b"trailers") {
                    return Role::Other;
                }
                Role::Hop
            }
            4 if is("date") => Role::Date,
            4 if is("host") => {
                self.hosts |= self.host;
                self.host = true;
                Role::Other
            }
            5 if is("proxy") => Role::Hop,
            6 if is("server") => Role::Server,
            6 if is("expect") => {
                self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
                Role::Other
            }
            7 if is("trailer") || is("upgrade") => Role::Hop,
            10 if is("connection") => {
                for token in value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    } else if !token.is_empty() {
                        named.push(token);
                    }
                }
                Role::Hop
            }
            10 if is("keep-alive") => Role::Hop,
            14 if is("content-length") => {
                self.content_length(value);
                Role::ContentLength
            }
            16 if is("proxy-connection") => Role::Hop,
            17 if is("transfer-encoding") => {
                let last = value
                    .rsplit(|&b| b == b',')
                    .map(<[u8]>::trim_ascii)
                    .find(|c| !c.is_empty());
                self.chunked = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
                Role::Hop
            }
            _ if super::headers::is_gateway_set(name) => {
                self.gateway_set = true;
                Role::GatewaySet
            }
            _ => Role::Other,
        }
    }
}

/// Builds the header map of a head, leaving out the hop-by-hop headers: what they say ends
/// up in `Facts`.
fn header_map(
    head: &Bytes,
    spans: &[Span],
    keep_te_trailers: bool,
) -> Result<(HeaderMap, Facts), ProtoError> {
    let mut map = super::buffers::header_map(spans.len() + ADDED_HEADERS);
    let mut facts = Facts::new();
    let mut named = smallvec::SmallVec::new();
    for s in spans {
        let raw_name = &head[s.name.0..s.name.1];
        let raw_value = &head[s.value.0..s.value.1];
        if facts.observe(raw_name, raw_value, keep_te_trailers, &mut named) == Role::Hop {
            continue;
        }
        let name =
            HeaderName::from_bytes(raw_name).map_err(|_| ProtoError("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(s.value.0..s.value.1))
            .map_err(|_| ProtoError("invalid header value"))?;
        map.append(name, value);
    }
    for n in named {
        if let Ok(n) = HeaderName::from_bytes(n) {
            map.remove(n);
        }
    }
    Ok((map, facts))
}

/// A response's header lines as the upstream sent them, for a response nothing reads
/// before it goes to the client (a Kong route without plugins): written back out as a few
/// copies of the head's bytes, and no header map is built. httparse has checked names and
/// values as strictly as `http` would. Compact (16-bit offsets, a few lines left out), as
/// it is made per response; a head that does not fit goes through the map.
pub struct RawHeaders {
    head: Bytes,
    /// The header lines, `Name: value\r\n` each, first to last.
    block: (u16, u16),
    /// Lines left out, in order: hop-by-hop ones, the gateway's own (`REPLACED_ON_RESPONSE`)
    /// and Content-Length, which goes out only when the gateway does not frame the body.
    skip: [(u16, u16); MAX_SKIPPED],
    skipped: u8,
    content_length: Option<(u16, u16)>,
    /// The upstream's Via value, which the gateway's extends.
    via: Option<(u16, u16)>,
    pub date: bool,
    pub server: bool,
}

/// Lines a raw head may leave out; usually Connection and Content-Length or
/// Transfer-Encoding.
const MAX_SKIPPED: usize = 6;

impl RawHeaders {
    /// The lines of `spans` and what they say, or `None` for a head the map must carry: a
    /// line that does not end in CRLF (httparse accepts a bare LF), a head too long for the
    /// offsets or with too many lines to leave out.
    fn new(head: &Bytes, spans: &[Span]) -> Option<(RawHeaders, Facts)> {
        u16::try_from(head.len()).ok()?;
        let mut facts = Facts::new();
        let mut named = smallvec::SmallVec::new();
        let start = spans.first().map_or(0, |s| s.name.0);
        let mut raw = RawHeaders {
            head: head.clone(),
            block: (start as u16, start as u16),
            skip: [(0, 0); MAX_SKIPPED],
            skipped: 0,
            content_length: None,
            via: None,
            date: false,
            server: false,
        };
        let mut at = start;
        for s in spans {
            let end = line_end(head, s.value.1)?;
            if s.name.0 != at || head[end - 2] != b'\r' {
                return None;
            }
            let line = (s.name.0 as u16, end as u16);
            at = end;
            let name = &head[s.name.0..s.name.1];
            let value = &head[s.value.0..s.value.1];
            match facts.observe(name, value, false, &mut named) {
                Role::Hop => raw.leave_out(line)?,
                Role::ContentLength => {
                    raw.content_length = Some(line);
                    raw.leave_out(line)?;
                }
                Role::Date => raw.date = true,
                Role::Server => raw.server = true,
                Role::GatewaySet
                    if super::headers::REPLACED_ON_RESPONSE
                        .iter()
                        .any(|n| name.eq_ignore_ascii_case(n.as_str().as_bytes())) =>
                {
                    if raw.via.is_none() && name.eq_ignore_ascii_case(b"via") {
                        raw.via = Some((s.value.0 as u16, s.value.1 as u16));
                    }
                    raw.leave_out(line)?;
                }
                Role::GatewaySet | Role::Other => {}
            }
        }
        raw.block.1 = at as u16;
        if !named.is_empty() {
            // Lines the Connection header names, wherever they are.
            for s in spans {
                let name = &head[s.name.0..s.name.1];
                if named.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    raw.leave_out((s.name.0 as u16, line_end(head, s.value.1)? as u16))?;
                }
            }
            let skip = &mut raw.skip[..usize::from(raw.skipped)];
            skip.sort_unstable();
        }
        Some((raw, facts))
    }

    fn leave_out(&mut self, line: (u16, u16)) -> Option<()> {
        let n = usize::from(self.skipped);
        if self.skip[..n].contains(&line) {
            return Some(());
        }
        *self.skip.get_mut(n)? = line;
        self.skipped += 1;
        Some(())
    }

    /// The upstream's Via, if it sent one.
    pub fn via(&self) -> Option<HeaderValue> {
        let (a, b) = self.via?;
        HeaderValue::from_maybe_shared(self.head.slice(usize::from(a)..usize::from(b))).ok()
    }

    /// The lines as a header map, for a hook that asks for the headers after all: the lines
    /// passed on and the upstream's Content-Length, as `header_map` would have made them.
    pub fn to_map(&self) -> HeaderMap {
        let mut map = super::buffers::header_map(16 + ADDED_HEADERS);
        let mut line = |a: usize, b: usize| {
            let bytes = &self.head[a..b];
            let Some(colon) = bytes.iter().position(|&c| c == b':') else {
                return;
            };
            let value = &bytes[colon + 1..];
            let start = a + colon + 1 + (value.len() - value.trim_ascii_start().len());
            let end = b - (value.len() - value.trim_ascii_end().len());
            // httparse checked both when the head was read.
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(&bytes[..colon]),
                HeaderValue::from_maybe_shared(self.head.slice(start..end.max(start))),
            ) {
                map.append(n, v);
            }
        };
        let mut at = usize::from(self.block.0);
        let end = usize::from(self.block.1);
        let mut lines = |from: usize, to: usize| {
            let mut a = from;
            while a < to {
                let b = line_end(&self.head[..to], a).unwrap_or(to);
                line(a, b);
                a = b;
            }
        };
        for &(a, b) in &self.skip[..usize::from(self.skipped)] {
            lines(at, usize::from(a));
            if self.content_length == Some((a, b)) {
                lines(usize::from(a), usize::from(b));
            }
            at = usize::from(b);
        }
        lines(at, end);
        map
    }

    /// Writes the lines passed on; the upstream's Content-Length with them when `keep_length`.
    /// Lines named in `replaced` are left out (the caller writes their new values).
    fn write(&self, out: &mut Vec<u8>, keep_length: bool, replaced: &[(HeaderName, HeaderValue)]) {
        let mut put = |span: &[u8]| {
            if replaced.is_empty() {
                return out.extend_from_slice(span);
            }
            for line in span.split_inclusive(|&c| c == b'\n') {
                let name = line.split(|&c| c == b':').next().unwrap_or_default();
                if !replaced
                    .iter()
                    .any(|(n, _)| n.as_str().as_bytes().eq_ignore_ascii_case(name))
                {
                    out.extend_from_slice(line);
                }
            }
        };
        let mut at = usize::from(self.block.0);
        for &(a, b) in &self.skip[..usize::from(self.skipped)] {
            if keep_length && self.content_length == Some((a, b)) {
                continue;
            }
            put(&self.head[at..usize::from(a)]);
            at = usize::from(b);
        }
        put(&self.head[at..usize::from(self.block.1)]);
    }
}

/// Just past the LF that ends the line `from` is in.
fn line_end(head: &[u8], from: usize) -> Option<usize> {
    head[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i + 1)
}

fn version(v: Option<u8>) -> Version {
    if v == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    }
}

/// Parses one request head off the front of `buf`. `Ok(None)`: more bytes are needed.
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, RequestError> {
    let mut slots = header_slots();
    let mut spans = Spans::new();
    let mut req = httparse::Request::new(&mut []);
    let (len, method, path, ver) = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => {
            let method = offset(buf, req.method.unwrap_or("").as_bytes());
            let path = offset(buf, req.path.unwrap_or("").as_bytes());
            record(buf, req.headers, &mut spans);
            (len, method, path, req.version)
        }
        Ok(httparse::Status::Partial) => {
            if !buf.windows(2).any(|w| w == b"\r\n") && buf.len() > MAX_REQUEST_LINE {
                return Err(RequestError::UriTooLong);
            }
            if buf.len() > MAX_HEAD {
                return Err(RequestError::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        // An HTTP version we do not speak, as opposed to no HTTP at all.
        Err(httparse::Error::Version)
            if buf[..].split(|&b| b == b'\n').next().is_some_and(|line| {
                line.windows(7)
                    .any(|w| w.starts_with(b" HTTP/") && w[6].is_ascii_digit())
            }) =>
        {
            return Err(RequestError::Version);
        }
        Err(_) => return Err(RequestError::Malformed),
    };
    if len > MAX_HEAD {
        return Err(RequestError::HeadTooLarge);
    }
    if path.1 - path.0 > MAX_REQUEST_LINE {
        return Err(RequestError::UriTooLong);
    }
    let head = buf.split_to(len).freeze();
    let method =
        Method::from_bytes(&head[method.0..method.1]).map_err(|_| RequestError::Malformed)?;
    let uri =
        Uri::from_maybe_shared(head.slice(path.0..path.1)).map_err(|_| RequestError::Malformed)?;
    let version = version(ver);
    let (headers, facts) = header_map(&head, &spans, true).map_err(|_| RequestError::Malformed)?;
    // A second Host would route one way here and another way at a proxy that reads the
    // last one; an absolute-form target still wins over a single Host (§3.2.2).
    if (version == Version::HTTP_11 && !facts.host) || facts.hosts {
        return Err(RequestError::Malformed);
    }
    let decoder = match (facts.chunked, facts.content_length) {
        (Some(_), Ok(Some(_))) => return Err(RequestError::Smuggling),
        (Some(true), _) if version == Version::HTTP_11 => Decoder::chunked(),
        (Some(_), _) => return Err(RequestError::UnknownEncoding),
        (None, Ok(n)) => Decoder::length(n.unwrap_or(0)),
        (None, Err(_)) => return Err(RequestError::Malformed),
    };
    let expect_continue = version == Version::HTTP_11 && facts.expect_continue;
    let keep_alive = facts.keep_alive(version);
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(RequestHead {
        parts,
        decoder,
        keep_alive,
        expect_continue,
        wire: Wire {
            head: head.clone(),
            gateway_set: facts.gateway_set,
        },
    }))
}

/// Parses one response head off the front of `buf`; `head_request` because a response to
/// HEAD has no body whatever its headers say. With `raw`, the headers stay as they came
/// (`ResponseHead::raw`) and the map is left empty, unless the head's lines need rewriting.
pub fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
    raw: bool,
) -> Result<Option<ResponseHead>, ProtoError> {
    let mut slots = header_slots();
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let mut spans = Spans::new();
    let (len, code, ver) = match parsed {
        Ok(httparse::Status::Complete(len)) => {
            record(buf, resp.headers, &mut spans);
            (len, resp.code.unwrap_or(0), resp.version)
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ProtoError("response head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ProtoError("malformed response head")),
    };
    let head = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| ProtoError("invalid status code"))?;
    let version = version(ver);
    let (headers, facts, raw) = match raw.then(|| RawHeaders::new(&head, &spans)).flatten() {
        Some((raw, facts)) => (HeaderMap::new(), facts, Some(raw)),
        None => {
            let (map, facts) = header_map(&head, &spans, false)?;
            (map, facts, None)
        }
    };
    let mut keep_alive = facts.keep_alive(version);
    let no_body = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let decoder = if no_body {
        Decoder::length(0)
    } else {
        match (facts.chunked, facts.content_length?) {
            (Some(true), _) => Decoder::chunked(),
            (None, Some(n)) => Decoder::length(n),
            // Any other coding, or no length at all: the body runs until the connection
            // closes, so the connection cannot be kept.
            _ => {
                keep_alive = false;
                Decoder::Close
            }
        }
    };
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(ResponseHead {
        parts,
        decoder,
        keep_alive,
        gateway_set: facts.gateway_set,
        raw,
    }))
}

/// One step of body decoding.
pub enum Step {
    Data(Bytes),
    /// More bytes are needed.
    More,
    End,
}

// Every connection and upstream body keeps one: the length limits fit beside the size.
const _: () = assert!(std::mem::size_of::<Decoder>() <= 16);

/// Body framing, decoded in place from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Length(u64),
    Chunked(Chunk),
    /// Until the peer closes.
    Close,
    Done,
}

/// Where a chunked decoder is (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    Size {
        n: u64,
        digits: u8,
    },
    /// In the extensions, `len` bytes of the size line read so far.
    Ext {
        n: u64,
        len: u16,
    },
    SizeLf {
        n: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the blank line that ends the body), `len`
    /// bytes of trailers read so far.
    TrailerStart {
        len: u16,
    },
    Trailer {
        len: u16,
    },
    EndLf,
}

impl Decoder {
    pub fn length(n: u64) -> Self {
        if n == 0 {
            Decoder::Done
        } else {
            Decoder::Length(n)
        }
    }
    pub fn chunked() -> Self {
        Decoder::Chunked(Chunk::Size { n: 0, digits: 0 })
    }
    pub fn is_done(&self) -> bool {
        *self == Decoder::Done
    }
    /// The bytes left when the length is known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next piece of body from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, ProtoError> {
        match self {
            Decoder::Done => Ok(Step::End),
            Decoder::Length(n) => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let take = (*n).min(buf.len() as u64) as usize;
                *n -= take as u64;
                if *n == 0 {
                    *self = Decoder::Done;
                }
                Ok(Step::Data(buf.split_to(take).freeze()))
            }
            Decoder::Close => {
                if buf.is_empty() {
                    Ok(Step::More)
                } else {
                    Ok(Step::Data(buf.split().freeze()))
                }
            }
            Decoder::Chunked(state) => {
                let step = decode_chunked(state, buf)?;
                if matches!(step, Step::End) {
                    *self = Decoder::Done;
                }
                Ok(step)
            }
        }
    }

    /// The peer closed the connection: the end of a close-delimited body, an error otherwise.
    pub fn eof(&mut self) -> Result<(), ProtoError> {
        match self {
            Decoder::Close | Decoder::Done => {
                *self = Decoder::Done;
                Ok(())
            }
            _ => Err(ProtoError("connection closed before the body ended")),
        }
    }
}

fn decode_chunked(state: &mut Chunk, buf: &mut BytesMut) -> Result<Step, ProtoError> {
    let mut i = 0;
    loop {
        if let Chunk::Data(n) = *state {
            // Control bytes before the data are consumed; the data itself is split off.
            let _ = buf.split_to(i);
            if buf.is_empty() {
                return Ok(Step::More);
            }
            let take = n.min(buf.len() as u64) as usize;
            let left = n - take as u64;
            *state = if left == 0 {
                Chunk::DataCr
            } else {
                Chunk::Data(left)
            };
            return Ok(Step::Data(buf.split_to(take).freeze()));
        }
        let Some(&b) = buf.get(i) else {
            let _ = buf.split_to(i);
            return Ok(Step::More);
        };
        i += 1;
        *state = match (*state, b) {
            (Chunk::Size { n, digits }, b) if b.is_ascii_hexdigit() => {
                if digits >= 15 {
                    return Err(ProtoError("chunk size too large"));
                }
                let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                Chunk::Size {
                    n: n * 16 + d,
                    digits: digits + 1,
                }
            }
            (Chunk::Size { digits: 0, .. }, _) => return Err(ProtoError("invalid chunk size")),
            (Chunk::Size { n, .. }, b'\r') => Chunk::SizeLf { n },
            (Chunk::Size { n, digits }, b';' | b' ' | b'\t') => Chunk::Ext {
                n,
                len: u16::from(digits) + 1,
            },
            (Chunk::Ext { n, .. }, b'\r') => Chunk::SizeLf { n },
            (Chunk::Ext { .. }, b'\n') => return Err(ProtoError("bare LF in a chunk size line")),
            (Chunk::Ext { len, .. }, _) if len >= MAX_CHUNK_LINE => {
                return Err(ProtoError("chunk size line too long"));
            }
            (Chunk::Ext { n, len }, _) => Chunk::Ext { n, len: len + 1 },
            (Chunk::SizeLf { n: 0 }, b'\n') => Chunk::TrailerStart { len: 0 },
            (Chunk::SizeLf { n }, b'\n') => Chunk::Data(n),
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::Size { n: 0, digits: 0 },
            (Chunk::TrailerStart { .. }, b'\r') => Chunk::EndLf,
            (Chunk::TrailerStart { len } | Chunk::Trailer { len }, _) if len >= MAX_TRAILERS => {
                return Err(ProtoError("trailers too long"));
            }
            (Chunk::TrailerStart { len } | Chunk::Trailer { len }, b'\n') => {
                Chunk::TrailerStart { len: len + 1 }
            }
            (Chunk::TrailerStart { len } | Chunk::Trailer { len }, _) => {
                Chunk::Trailer { len: len + 1 }
            }
            (Chunk::EndLf, b'\n') => {
                let _ = buf.split_to(i);
                return Ok(Step::End);
            }
            _ => return Err(ProtoError("invalid chunked framing")),
        };
    }
}

/// How the body of a message being written is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// No framing headers: no body (or a close-delimited one).
    None,
}

impl Framing {
    /// A length-framed body of at most `limit` bytes.
    pub fn small_body(self, limit: u64) -> bool {
        matches!(self, Framing::Length(n) if n <= limit)
    }
}

fn put_headers(out: &mut Vec<u8>, headers: &HeaderMap, skip_length: bool) {
    for (name, value) in headers {
        if skip_length && name == header::CONTENT_LENGTH {
            continue;
        }
        put_header(out, name, value);
    }
}

fn put_header(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn put_framing(out: &mut Vec<u8>, framing: Framing) {
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa_u64(n, &mut [0u8; 20]));
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {}
    }
}

fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// `METHOD target HTTP/1.x`, the headers, then the gateway's `added` ones. A
/// `Framing::None` keeps the headers' own Content-Length (a client's `Content-Length: 0`
/// travels on).
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
    added: &[(&HeaderName, HeaderValue)],
    framing: Framing,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.extend_from_slice(if version == Version::HTTP_10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    put_headers(out, headers, framing != Framing::None);
    for (name, value) in added {
        put_header(out, name, value);
    }
    put_framing(out, framing);
    out.extend_from_slice(b"\r\n");
}

/// A response's own headers, as the writer gets them.
pub enum Lines<'a> {
    Map(&'a HeaderMap),
    /// The upstream's lines as they came, and headers plugins set, which replace the lines
    /// of the same names.
    Raw(&'a RawHeaders, &'a [(HeaderName, HeaderValue)]),
}

/// The status line, the headers and the gateway's `stamp` of a response to the client.
/// `framing` is `None` for a body the status or the request method rules out (the headers'
/// own Content-Length stays, as for HEAD), or for a close-delimited one.
#[allow(clippy::too_many_arguments)]
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    client: Version,
    headers: Lines<'_>,
    stamp: &[(&HeaderName, HeaderValue)],
    framing: Framing,
    keep_alive: bool,
    date: &HeaderValue,
) {
    out.extend_from_slice(if client == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let has_date = match headers {
        Lines::Map(map) => {
            put_headers(out, map, framing != Framing::None);
            map.contains_key(header::DATE)
        }
        Lines::Raw(raw, set) => {
            raw.write(out, framing == Framing::None, set);
            for (name, value) in set {
                put_header(out, name, value);
            }
            raw.date
        }
    };
    for (name, value) in stamp {
        put_header(out, name, value);
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    put_framing(out, framing);
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if client == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The size line that starts a chunk.
pub fn chunk_size_line(len: usize, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(d: &mut Decoder, input: &[u8]) -> Result<(Vec<u8>, bool), ProtoError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf)? {
                Step::Data(b) => out.extend_from_slice(&b),
                Step::More => return Ok((out, false)),
                Step::End => return Ok((out, true)),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 0..wire.len() {
            let mut d = Decoder::chunked();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut ended = false;
            for part in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(part);
                loop {
                    match d.decode(&mut buf).unwrap() {
                        Step::Data(b) => out.extend_from_slice(&b),
                        Step::More => break,
                        Step::End => {
                            ended = true;
                            break;
                        }
                    }
                }
            }
            assert!(ended, "split at {split}");
            assert_eq!(out, b"hello world");
            assert_eq!(&buf[..], b"NEXT", "split at {split}");
        }
    }

    #[test]
    fn bad_chunked_framing_is_an_error() {
        let long_ext = format!("5;{}\r\nhello\r\n", "e".repeat(MAX_CHUNK_LINE as usize));
        let long_trailer = format!("0\r\nX: {}\r\n\r\n", "t".repeat(MAX_TRAILERS as usize));
        for wire in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"fffffffffffffffff\r\n",
            b"0x5\r\nhello\r\n",
            b"-5\r\nhello\r\n",
            b"5 x\nhello\r\n",
            long_ext.as_bytes(),
            long_trailer.as_bytes(),
        ] {
            assert!(decode_all(&mut Decoder::chunked(), wire).is_err());
        }
        // Just under the limit, extensions are skipped.
        let ext = format!(
            "5;{}\r\nhello\r\n0\r\n\r\n",
            "e".repeat(MAX_CHUNK_LINE as usize - 3)
        );
        let (body, ended) = decode_all(&mut Decoder::chunked(), ext.as_bytes()).unwrap();
        assert_eq!((&body[..], ended), (&b"hello"[..], true));
    }

    #[test]
    fn requests_with_ambiguous_framing_are_refused() {
        let cases: [(&[u8], RequestError); 7] = [
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nhost: b\r\n\r\n",
                RequestError::Malformed,
            ),
            (
                b"GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
                RequestError::Malformed,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                RequestError::Smuggling,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                RequestError::Malformed,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                RequestError::UnknownEncoding,
            ),
            (b"GET / HTTP/1.1\r\n\r\n", RequestError::Malformed),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", RequestError::Version),
        ];
        for (wire, want) in cases {
            let got = parse_request(&mut BytesMut::from(wire)).err();
            assert_eq!(got, Some(want), "{}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn hop_by_hop_headers_are_read_and_left_out_of_the_map() {
        let mut buf = BytesMut::from(
            &b"GET / HTTP/1.1\r\nHost: x\r\nX-Secret: s\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy: http://evil\r\nX-Kept: 1\r\n\r\n"[..],
        );
        let h = parse_request(&mut buf).unwrap().unwrap();
        let mut names: Vec<&str> = h.parts.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["host", "te", "x-kept"]);
        assert!(h.keep_alive);

        // A response keeps no TE at all; `Connection: close` is read, not passed on.
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nTE: trailers\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nX-Kept: 1\r\n\r\n"[..],
        );
        let r = parse_response(&mut buf, false, false).unwrap().unwrap();
        let names: Vec<&str> = r.parts.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
        assert!(!r.keep_alive);
        assert!(matches!(r.decoder, Decoder::Chunked(_)));

        // An HTTP/1.0 peer keeps the connection only when it says so.
        let mut buf = BytesMut::from(&b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"[..]);
        assert!(parse_request(&mut buf).unwrap().unwrap().keep_alive);
        let mut buf = BytesMut::from(&b"GET / HTTP/1.0\r\n\r\n"[..]);
        assert!(!parse_request(&mut buf).unwrap().unwrap().keep_alive);
    }

    #[test]
    fn a_request_head_is_parsed_and_the_rest_stays() {
        let mut buf = BytesMut::from(
            &b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 2\r\n\r\nhiGET"[..],
        );
        let h = parse_request(&mut buf).unwrap().unwrap();
        assert_eq!(h.parts.uri, "/a?b=1");
        assert_eq!(h.parts.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(h.decoder, Decoder::Length(2));
        assert!(h.keep_alive);
        assert_eq!(&buf[..], b"hiGET");
        assert!(
            parse_request(&mut BytesMut::from(&b"GET / HTTP/1.1\r\nHo"[..]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn response_framing_follows_the_status_and_the_method() {
        let parse = |wire: &[u8], head: bool| {
            parse_response(&mut BytesMut::from(wire), head, false)
                .unwrap()
                .unwrap()
        };
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
        assert!(r.decoder.is_done());
        let r = parse(
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            false,
        );
        assert!(r.decoder.is_done());
        let r = parse(b"HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(r.decoder, Decoder::Close);
        assert!(!r.keep_alive);
        let r = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false);
        assert!(!r.keep_alive);
    }

    /// A response's lines passed on as they came say what its map would: the same headers
    /// reach the client, hop-by-hop ones and the gateway's own left out, the upstream's
    /// Content-Length only when the gateway does not frame the body. A head with bare LF
    /// line ends goes through the map.
    #[test]
    fn raw_response_lines_say_what_the_map_says() {
        let heads: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\nServer: o\r\nDate: d\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nVia: 1.1 up\r\nX-Switchyard-Request-Id: u\r\nX-Forwarded-For: 1.2.3.4\r\nContent-Length: 2\r\nX-Kept:  spaced \r\nx-a: 1\r\nX-A: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\nProxy-Connection: x\r\nUpgrade: h2c\r\nX-Last: z\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ];
        let date = HeaderValue::from_static("now");
        let written = |lines: Lines<'_>, framing: Framing| {
            let mut out = Vec::new();
            write_response_head(
                &mut out,
                StatusCode::OK,
                Version::HTTP_11,
                lines,
                &[],
                framing,
                true,
                &date,
            );
            let mut buf = BytesMut::from(&out[..]);
            let back = parse_response(&mut buf, false, false).unwrap().unwrap();
            assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&out));
            back.parts.headers
        };
        for wire in heads {
            let raw = parse_response(&mut BytesMut::from(wire), false, true)
                .unwrap()
                .unwrap();
            let mapped = parse_response(&mut BytesMut::from(wire), false, false)
                .unwrap()
                .unwrap();
            let lines = raw.raw.as_ref().expect("CRLF heads stay raw");
            assert!(raw.parts.headers.is_empty());
            assert_eq!(
                (raw.keep_alive, raw.decoder, raw.gateway_set),
                (mapped.keep_alive, mapped.decoder, mapped.gateway_set)
            );
            let mut map = mapped.parts.headers;
            for name in crate::proxy::headers::REPLACED_ON_RESPONSE {
                map.remove(name);
            }
            assert_eq!(lines.date, map.contains_key(header::DATE));
            assert_eq!(lines.server, map.contains_key(header::SERVER));
            for framing in [Framing::Length(2), Framing::None] {
                assert_eq!(
                    written(Lines::Raw(lines, &[]), framing),
                    written(Lines::Map(&map), framing),
                    "{}",
                    String::from_utf8_lossy(wire)
                );
            }
        }
        let first = parse_response(&mut BytesMut::from(heads[0]), false, true)
            .unwrap()
            .unwrap();
        let lines = first.raw.unwrap();
        assert_eq!(lines.via().unwrap(), "1.1 up");
        let mut out = Vec::new();
        lines.write(&mut out, false, &[]);
        assert_eq!(
            out,
            b"Server: o\r\nDate: d\r\nX-Forwarded-For: 1.2.3.4\r\nX-Kept:  spaced \r\nx-a: 1\r\nX-A: 2\r\n"
        );

        let bare = parse_response(
            &mut BytesMut::from(&b"HTTP/1.1 200 OK\nX-A: 1\nContent-Length: 2\n\n"[..]),
            false,
            true,
        )
        .unwrap()
        .unwrap();
        assert!(bare.raw.is_none());
        assert_eq!(bare.parts.headers.get("x-a").unwrap(), "1");

        // More lines to leave out than a raw head holds: the map carries it.
        let many = b"HTTP/1.1 200 OK\r\nConnection: a, b, c, d, e, f\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\n\r\n";
        let r = parse_response(&mut BytesMut::from(&many[..]), false, true)
            .unwrap()
            .unwrap();
        assert!(r.raw.is_none());
        let names: Vec<&str> = r.parts.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["g"]);
    }
}
