//! The HTTP/1 parser's edge cases, end to end through the real server stack (and the binary
//! where the log or a flag is what is tested): a request body the client breaks (bad chunk
//! sizes, a chunk-size line past 16 KiB, a body cut short) is answered 400 and never blamed
//! on the upstream; two Host headers are 400; a request head that does not come whole
//! within the client header timeout is 408; an upstream body cut short is a 502 while the
//! head has not gone out, and a cut connection once it has.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{Running, TestGateway, Upstream, read_response};

const BROKEN_BODY: &str = "Bad request: the request body is malformed or incomplete";

fn kong_yaml(up: SocketAddr) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://{up}
    routes:
      - name: r
        paths: ["/"]
"#
    )
}

fn ocelot_json(up: SocketAddr) -> String {
    format!(
        r#"{{"Routes": [{{"UpstreamPathTemplate": "/{{all}}", "DownstreamPathTemplate": "/{{all}}",
            "UpstreamHttpMethod": ["Post"],
            "DownstreamScheme": "http", "DownstreamHostAndPorts": [{{"Host": "127.0.0.1", "Port": {}}}]}}]}}"#,
        up.port()
    )
}

fn connect(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// Sends `wire` on a fresh connection (then, with `half_close`, shuts the client's sending
/// side) and reads the answer.
fn exchange(addr: SocketAddr, wire: &[u8], half_close: bool) -> common::Resp {
    let (mut s, mut r) = connect(addr);
    s.write_all(wire).unwrap();
    if half_close {
        s.shutdown(Shutdown::Write).unwrap();
    }
    read_response(&mut r, false).expect("a complete response")
}

/// Bodies that break chunked framing, each after a chunked request head.
fn broken_chunked_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(17 * 1024));
    vec![
        ("0x prefix", b"0x5\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("negative", b"-5\r\nhello\r\n0\r\n\r\n".to_vec()),
        (
            "17 hex digits",
            b"00000000000000005\r\nhello\r\n0\r\n\r\n".to_vec(),
        ),
        ("not hex", b"zz\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("size line over 16 KiB", long_ext.into_bytes()),
        (
            "bad size after a good chunk",
            b"5\r\nhello\r\n0x1\r\na\r\n0\r\n\r\n".to_vec(),
        ),
    ]
}

fn assert_client_error(resp: &common::Resp, what: &str) {
    assert_eq!(resp.status, 400, "{what}: {}", resp.text());
    assert_eq!(resp.json()["message"], BROKEN_BODY, "{what}");
    assert!(resp.json()["request_id"].is_string(), "{what}");
    assert_eq!(resp.header("connection"), Some("close"), "{what}");
}

#[test]
fn a_broken_chunked_request_body_is_a_400_on_kong_and_ocelot_routes() {
    let up = Upstream::echo();
    let kong = TestGateway::kong(&kong_yaml(up.addr()));
    let ocelot = TestGateway::start(&[("ocelot.json", &ocelot_json(up.addr()))]);
    for gw in [&kong, &ocelot] {
        for (what, body) in broken_chunked_bodies() {
            let mut wire =
                b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            wire.extend_from_slice(&body);
            let resp = exchange(gw.addr, &wire, false);
            assert_client_error(&resp, what);
        }
    }
    assert_eq!(
        up.count(),
        0,
        "no broken request reached the upstream whole"
    );
    // The same connection's next request would have been read out of a broken body; a
    // fresh one is served.
    assert_eq!(kong.get("/after").status, 200);
}

#[test]
fn a_request_body_cut_short_by_the_client_is_a_400() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&kong_yaml(up.addr()));
    let cases: [(&str, &[u8]); 3] = [
        (
            "Content-Length",
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
        ),
        (
            "chunked, mid-chunk",
            b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        ),
        (
            "chunked, before the last chunk",
            b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ),
    ];
    for (what, wire) in cases {
        let resp = exchange(gw.addr, wire, true);
        assert_client_error(&resp, what);
    }
    assert_eq!(up.count(), 0, "no cut request reached the upstream whole");
}

/// A body nobody forwarded (the route answered 404 at once) that breaks after the answer
/// went out: the connection closes, and no second answer is made up.
#[test]
fn a_request_body_that_breaks_after_the_answer_closes_the_connection() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://{}
    routes:
      - name: r
        paths: ["/known"]
"#,
        up.addr()
    ));
    let (mut s, mut r) = connect(gw.addr);
    s.write_all(
        b"POST /unknown HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .unwrap();
    let resp = read_response(&mut r, false).expect("the 404");
    assert_eq!(resp.status, 404);
    s.write_all(b"-5\r\nhello\r\n0\r\n\r\nGET /known HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert_eq!(up.count(), 0);
}

/// Through the binary: the log names the client's error, and no upstream failure.
#[test]
fn a_broken_request_body_is_logged_as_the_clients_error_not_the_upstreams() {
    let up = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), kong_yaml(up.addr())).unwrap();
    let gw = Running::start(dir.path(), &[]);
    let resp = exchange(
        gw.addr,
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        false,
    );
    assert_client_error(&resp, "negative chunk size");
    assert!(
        gw.logged(&["client error", "bad request body framing"]),
        "{}",
        gw.log.lock().unwrap()
    );
    let log = gw.log.lock().unwrap();
    assert!(!log.contains("upstream failed"), "{log}");
}

#[test]
fn two_host_headers_are_a_400_and_an_absolute_target_wins_over_one_host() {
    let up = Upstream::echo();
    let gw = TestGateway::kong(&format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://{}
    routes:
      - name: r
        hosts: ["right.test"]
        paths: ["/"]
"#,
        up.addr()
    ));
    for wire in [
        &b"GET /x HTTP/1.1\r\nHost: right.test\r\nHost: right.test\r\n\r\n"[..],
        b"GET /x HTTP/1.1\r\nHost: right.test\r\nX-A: 1\r\nhost: wrong.test\r\n\r\n",
        b"GET http://right.test/x HTTP/1.1\r\nHost: right.test\r\nHost: wrong.test\r\n\r\n",
    ] {
        let resp = exchange(gw.addr, wire, false);
        assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(wire));
        assert!(resp.json()["message"].is_string());
        assert_eq!(resp.header("connection"), Some("close"));
    }
    assert_eq!(up.count(), 0);

    let resp = exchange(
        gw.addr,
        b"GET http://right.test/x HTTP/1.1\r\nHost: wrong.test\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!(resp.status, 200, "the absolute-form target routes");
    let resp = exchange(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: wrong.test\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!(resp.status, 404);
}

/// Through the binary, with `--client-header-timeout`: a head begun and left unfinished is
/// answered 408 and the connection closes; a connection that sends nothing is not.
#[test]
fn a_request_head_that_does_not_come_whole_in_time_is_a_408() {
    let up = Upstream::echo();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kong.yaml"), kong_yaml(up.addr())).unwrap();
    let gw = Running::start(dir.path(), &["--client-header-timeout", "300"]);

    let (mut s, mut r) = connect(gw.addr);
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n").unwrap();
    let resp = read_response(&mut r, false).expect("a 408");
    assert_eq!(resp.status, 408);
    assert!(resp.json()["message"].is_string());
    assert_eq!(resp.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap_or(0), 0, "then the close");

    // Idle past the header timeout with no byte sent: still open, and served.
    let (mut s, mut r) = connect(gw.addr);
    std::thread::sleep(Duration::from_millis(900));
    s.write_all(b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut r, false).expect("an answer");
    assert_eq!(resp.status, 200);
    // And after a response, a kept-alive connection idles without a 408 too.
    std::thread::sleep(Duration::from_millis(900));
    s.write_all(b"GET /later HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut r, false).expect("an answer");
    assert_eq!(resp.status, 200);
    assert_eq!(up.count(), 2, "the slow head never reached the upstream");
    drop(gw);

    // The same from the environment.
    let gw = Running::start_env(
        dir.path(),
        &[],
        &[("SWITCHYARD_CLIENT_HEADER_TIMEOUT", "300")],
    );
    let (mut s, mut r) = connect(gw.addr);
    s.write_all(b"GET /slow HTTP/1.1\r\nHo").unwrap();
    assert_eq!(read_response(&mut r, false).expect("a 408").status, 408);
}

/// An upstream that answers every request with `answer`, then closes.
fn cut_upstream(answer: Vec<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                let mut s = s;
                let _ = s.write_all(&answer);
                // Let the bytes go before the close.
                std::thread::sleep(Duration::from_millis(50));
            });
        }
    });
    addr
}

fn raw_get(addr: SocketAddr) -> Vec<u8> {
    let (mut s, mut r) = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut all = Vec::new();
    let _ = r.read_to_end(&mut all);
    all
}

#[test]
fn an_upstream_body_cut_short_before_the_head_went_out_is_a_502() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let gw = TestGateway::kong(&kong_yaml(cut_upstream(answer.to_vec())));
        let resp = gw.get("/");
        assert_eq!(resp.status, 502, "{}", String::from_utf8_lossy(answer));
        assert_eq!(
            resp.json()["message"],
            "An invalid response was received from the upstream server"
        );
        assert!(resp.json()["request_id"].is_string());
    }
}

#[test]
fn an_upstream_body_cut_short_after_the_head_went_out_cuts_the_client_connection() {
    // Chunked: what came goes on, and the connection closes without the last chunk.
    let gw = TestGateway::kong(&kong_yaml(cut_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n".to_vec(),
    )));
    let all = raw_get(gw.addr);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n4\r\nwiki\r\n"), "{text}");

    // Content-Length, large enough to stream (and to be spliced): short of its length.
    let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec();
    answer.extend(std::iter::repeat_n(b'x', 100_000));
    let gw = TestGateway::kong(&kong_yaml(cut_upstream(answer)));
    let all = raw_get(gw.addr);
    let text = String::from_utf8_lossy(&all[..all.len().min(200)]).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = all.len() - head_end;
    assert!(body < 1_000_000, "{body} bytes: the body was cut short");
}
