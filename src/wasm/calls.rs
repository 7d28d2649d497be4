//! HTTP calls filters dispatch (`proxy_http_call`): made once the hook that dispatched them
//! returned, from a request's paused chain (`chain`) or a timer (`vm::ticker`); their
//! answers go back to the filter in `proxy_on_http_call_response`.

use super::host::{CallResponse, Dispatch};

/// Makes each call in turn; `None` for one that failed or timed out.
pub async fn fetch_all(calls: Vec<Dispatch>) -> Vec<(u32, Option<CallResponse>)> {
    let mut out = Vec::with_capacity(calls.len());
    for d in calls {
        let mut rb = client()
            .request(d.method, &d.url)
            .timeout(d.timeout)
            .body(d.body);
        for (k, v) in d.headers {
            rb = rb.header(k, v);
        }
        let answer = match rb.send().await {
            Ok(r) => {
                let (status, headers) = (r.status().as_u16(), r.headers().clone());
                r.bytes().await.ok().map(|body| CallResponse {
                    status,
                    headers,
                    body,
                })
            }
            Err(e) => {
                tracing::warn!(url = %d.url, error = %e, "Proxy-Wasm filter's HTTP call failed");
                None
            }
        };
        out.push((d.token, answer));
    }
    out
}

/// The client of filters' HTTP calls (plain HTTP: upstreams are named `host:port`).
fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    })
}
