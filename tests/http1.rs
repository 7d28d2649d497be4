//! HTTP/1.1 on both legs of the proxy, through the real server stack: body framing both
//! ways (length, chunked, until close), Expect: 100-continue, HTTP/1.0 clients, pipelining,
//! refused heads, interim responses, kept-alive upstream connections the upstream closed,
//! and bodies larger than any buffer.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestGateway, Upstream, read_response};

fn gateway_to(up: SocketAddr) -> TestGateway {
    TestGateway::kong(&format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://{up}
    routes:
      - name: r
        paths: ["/"]
"#
    ))
}

fn connect(gw: &TestGateway) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// An upstream that reads each request head (and a Content-Length body) and answers with
/// `respond(connection number, request number)`, written in the pieces given, with a pause
/// between them; it closes the connection when the pieces say so.
struct Scripted {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

type Script = dyn Fn(usize, usize) -> (Vec<Vec<u8>>, bool) + Send + Sync;

impl Scripted {
    fn start(
        respond: impl Fn(usize, usize) -> (Vec<Vec<u8>>, bool) + Send + Sync + 'static,
    ) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let accepted: Arc<AtomicUsize> = Arc::default();
        let count = accepted.clone();
        let respond: Arc<Script> = Arc::new(respond);
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let respond = respond.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut w = s;
                    for req in 0.. {
                        let mut len = 0usize;
                        loop {
                            let mut line = String::new();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                len = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; len];
                        r.read_exact(&mut body).unwrap();
                        let (pieces, close) = respond(n, req);
                        for p in pieces {
                            if w.write_all(&p).is_err() {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        Scripted { addr, accepted }
    }
}

#[test]
fn a_chunked_request_body_reaches_the_upstream_whole() {
    let up = Upstream::echo();
    let gw = gateway_to(up.addr());
    let (mut s, mut r) = connect(&gw);
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"6;x=y\r\n world\r\n0\r\n\r\n").unwrap();
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.status, 200);
    let seen = up.last();
    assert_eq!(seen.body, b"hello world");
    assert_eq!(
        seen.headers.get("transfer-encoding").map(String::as_str),
        Some("chunked")
    );
}

#[test]
fn expect_100_continue_is_answered_by_the_gateway() {
    let up = Upstream::echo();
    let gw = gateway_to(up.addr());
    let (mut s, mut r) = connect(&gw);
    s.write_all(b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    r.read_line(&mut line).unwrap();
    s.write_all(b"data").unwrap();
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.status, 200);
    let seen = up.last();
    assert_eq!(seen.body, b"data");
    assert!(!seen.headers.contains_key("expect"), "{:?}", seen.headers);
}

#[test]
fn an_http10_client_gets_an_http10_answer_and_the_connection_closes() {
    let up = Upstream::echo();
    let gw = gateway_to(up.addr());
    let (mut s, mut r) = connect(&gw);
    s.write_all(b"GET /old HTTP/1.0\r\n\r\n").unwrap();
    let mut all = String::new();
    r.read_to_string(&mut all).unwrap();
    assert!(all.starts_with("HTTP/1.0 200 OK\r\n"), "{all}");
    assert!(
        all.to_ascii_lowercase().contains("connection: close"),
        "{all}"
    );
    assert!(all.contains(r#""path":"/old""#), "{all}");
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let up = Upstream::echo();
    let gw = gateway_to(up.addr());
    let (mut s, mut r) = connect(&gw);
    s.write_all(
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nPOST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .unwrap();
    for path in ["/one", "/two", "/three"] {
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json()["path"], path);
    }
    assert_eq!(up.seen.lock().unwrap()[1].body, b"abc");
}

#[test]
fn broken_request_heads_get_the_right_4xx_with_a_json_body() {
    let up = Upstream::echo();
    let gw = gateway_to(up.addr());
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(10_000));
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40_000)
    );
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n".to_vec(), 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 501),
        (long_uri.into_bytes(), 414),
        (big_header.into_bytes(), 431),
    ];
    for (wire, want) in cases {
        let (mut s, mut r) = connect(&gw);
        s.write_all(&wire).unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(
            resp.status,
            want,
            "{}",
            String::from_utf8_lossy(&wire[..40.min(wire.len())])
        );
        assert!(resp.json()["message"].is_string());
        assert_eq!(resp.header("connection"), Some("close"));
    }
    assert_eq!(up.count(), 0, "nothing broken reaches the upstream");
}

#[test]
fn a_head_request_gets_the_upstream_length_and_no_body() {
    let up = Upstream::echo();
    let gw = gateway_to(up.addr());
    let (mut s, mut r) = connect(&gw);
    s.write_all(b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let head = read_response(&mut r, true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("26"));
    // Had a body followed the HEAD answer, this would read it as the next response.
    let next = read_response(&mut r, false).unwrap();
    assert_eq!(next.json()["path"], "/after");
}

#[test]
fn an_unread_request_body_does_not_break_the_next_request() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://{}
    routes:
      - name: r
        paths: ["/known"]
        strip_path: false
"#,
        up.addr()
    ));
    let (mut s, mut r) = connect(&gw);
    s.write_all(b"POST /unknown HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789")
        .unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().status, 404);
    s.write_all(b"POST /unknown HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r, false).unwrap().status, 404);
    s.write_all(b"GET /known HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["path"], "/known");
}

#[test]
fn a_chunked_upstream_response_is_streamed_to_the_client() {
    let up = Scripted::start(|_, _| {
        (
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                b"4\r\nwiki\r\n".to_vec(),
                b"5\r\npedia\r\n".to_vec(),
                b"0\r\n\r\n".to_vec(),
            ],
            false,
        )
    });
    let gw = gateway_to(up.addr);
    let (mut s, mut r) = connect(&gw);
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
        assert_eq!(resp.text(), "wikipedia");
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "the upstream connection was kept"
    );
}

#[test]
fn a_response_delimited_by_close_reaches_the_client_whole() {
    let up = Scripted::start(|_, _| {
        (
            vec![
                b"HTTP/1.1 200 OK\r\n\r\nuntil".to_vec(),
                b" the end".to_vec(),
            ],
            true,
        )
    });
    let gw = gateway_to(up.addr);
    let (mut s, mut r) = connect(&gw);
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.text(), "until the end");
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        2,
        "such a connection cannot be kept"
    );
}

#[test]
fn interim_responses_from_the_upstream_are_skipped() {
    let up = Scripted::start(|_, _| {
        (
            vec![
                b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n".to_vec(),
                b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            ],
            false,
        )
    });
    let gw = gateway_to(up.addr);
    let resp = gw.get("/");
    assert_eq!(resp.status, 201);
    assert_eq!(resp.text(), "ok");
}

#[test]
fn a_kept_alive_upstream_connection_the_upstream_closed_is_replaced() {
    // Every connection answers one request and then closes, without saying so first.
    let up = Scripted::start(|_, _| {
        (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()],
            true,
        )
    });
    let gw = gateway_to(up.addr);
    for i in 0..20 {
        // No pause at all on odd rounds: the close may not have been seen yet.
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
        let resp = gw.get("/");
        assert_eq!(resp.status, 200, "round {i}: {}", resp.text());
        assert_eq!(resp.text(), "ok");
    }
}

#[test]
fn bodies_larger_than_any_buffer_stream_both_ways() {
    const BIG: usize = 8 << 20;
    let payload: Arc<Vec<u8>> = Arc::new((0..BIG).map(|i| (i % 251) as u8).collect());
    let p = payload.clone();
    let down = Scripted::start(move |_, _| {
        let mut head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
        head.extend_from_slice(&p);
        (vec![head], false)
    });
    let gw = gateway_to(down.addr);
    let resp = gw.get("/big");
    assert_eq!(resp.body.len(), BIG);
    assert!(resp.body == *payload, "the body arrived changed");

    let up = Upstream::echo();
    let gw = gateway_to(up.addr());
    let resp = gw.send("POST", "/upload", &[], &payload);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["body_len"], BIG);
    assert!(up.last().body == *payload);
}

#[test]
fn an_upstream_that_breaks_framing_gets_a_502() {
    let up = Scripted::start(|_, _| {
        (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n".to_vec()],
            true,
        )
    });
    let gw = gateway_to(up.addr);
    let resp = gw.get("/");
    assert_eq!(resp.status, 502);
    assert_eq!(
        resp.json()["message"],
        "An invalid response was received from the upstream server"
    );
}

#[test]
fn an_upstreams_copies_of_the_gateways_response_headers_are_replaced() {
    let up = Scripted::start(|_, _| {
        let head = "HTTP/1.1 200 OK\r\nServer: origin\r\nVia: 1.1 origin\r\n\
                    X-Switchyard-Request-Id: upstream\r\nX-Switchyard-Upstream-Latency: 999\r\n\
                    Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\
                    X-Custom: kept\r\nContent-Length: 2\r\n\r\nok";
        (vec![head.as_bytes().to_vec()], false)
    });
    let kong = gateway_to(up.addr);
    // An Ocelot route: its response head goes through a header map and the header phase; a
    // Kong route without plugins passes the upstream's lines on as they came. Both must
    // come out the same: hop-by-hop headers and the upstream's copies of the gateway's gone.
    let ocelot = TestGateway::start(&[(
        "ocelot.json",
        &format!(
            r#"{{"Routes": [{{"UpstreamPathTemplate": "/{{all}}", "DownstreamPathTemplate": "/{{all}}",
                "DownstreamScheme": "http", "DownstreamHostAndPorts": [{{"Host": "127.0.0.1", "Port": {}}}]}}]}}"#,
            up.addr.port()
        ),
    )]);
    for gw in [&kong, &ocelot] {
        let r = gw.get("/x");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "ok");
        assert_eq!(r.header("server"), Some("origin"));
        assert_eq!(r.header("x-custom"), Some("kept"));
        for hop in ["x-hop", "keep-alive"] {
            assert_eq!(r.header(hop), None, "{hop}");
        }
        // The gateway's own: the test client asked to close.
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(
            r.header("via"),
            Some(concat!(
                "1.1 origin, 1.1 switchyard/",
                env!("CARGO_PKG_VERSION")
            ))
        );
        let id = r.header("x-switchyard-request-id").unwrap();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        let ms = r.header("x-switchyard-upstream-latency").unwrap();
        assert!(ms.parse::<u64>().is_ok_and(|ms| ms < 999), "{ms}");
    }
}
