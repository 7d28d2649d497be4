//! Listeners and workers. Each worker is one thread with its own single-threaded runtime and
//! its own `SO_REUSEPORT` socket per listen address, so the kernel spreads connections and a
//! request never crosses threads: the upstream pool, the random source and the snapshot
//! handle are all worker-local.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};

use super::{Conn, handler};
use crate::gateway::Gateway;

/// Binds `addr` with `SO_REUSEPORT` so that every worker can bind it too.
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Binds every address once per worker. Port 0 is resolved by the first bind, so all the
/// workers share the one port the kernel picked.
pub fn bind_all(
    addrs: &[SocketAddr],
    workers: usize,
) -> std::io::Result<(Vec<SocketAddr>, Vec<Vec<std::net::TcpListener>>)> {
    let mut per_worker: Vec<Vec<std::net::TcpListener>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for addr in addrs {
        let first = bind_reuseport(*addr)?;
        let actual = first.local_addr()?;
        bound.push(actual);
        per_worker[0].push(first);
        for w in per_worker.iter_mut().skip(1) {
            w.push(bind_reuseport(actual)?);
        }
    }
    Ok((bound, per_worker))
}

/// Starts the worker threads; they serve until the process exits.
pub fn spawn_workers(
    gateway: Arc<Gateway>,
    listeners: Vec<Vec<std::net::TcpListener>>,
) -> Vec<std::thread::JoinHandle<()>> {
    listeners
        .into_iter()
        .enumerate()
        .map(|(i, ls)| {
            let gw = gateway.clone();
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("worker runtime");
                    rt.block_on(async move {
                        let mut tasks = Vec::new();
                        for l in ls {
                            let l = tokio::net::TcpListener::from_std(l).expect("listener");
                            tasks.push(tokio::spawn(accept_loop(gw.clone(), l)));
                        }
                        for t in tasks {
                            let _ = t.await;
                        }
                    });
                })
                .expect("spawn worker")
        })
        .collect()
}

async fn accept_loop(gw: Arc<Gateway>, listener: tokio::net::TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let gw = gw.clone();
        tokio::spawn(async move {
            let conn = Arc::new(Conn::new(peer, local, false));
            let service = service_fn(move |req| {
                let conn = conn.clone();
                // Each request takes the snapshot current when it starts: a reload never
                // changes a request in flight, and the next request sees the new config.
                let snap = gw.snapshot();
                async move { Ok::<_, Infallible>(handler::handle(snap, &conn, req).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .keep_alive(true)
                .max_buf_size(256 * 1024);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
