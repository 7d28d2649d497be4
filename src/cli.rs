//! The command line: `run`, `check`, `config` and `explain`. Process settings are flags (each
//! also an environment variable); everything about routing lives in the config files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};

use crate::config::diag::{Diagnostic, Severity};
use crate::config::loader;
use crate::gateway::compile_dir;
use crate::ip::RealIp;
use crate::plugins::Registry;
use crate::router::{Miss, Request as RouteRequest};
use crate::snapshot::Snapshot;
use crate::uri::normalize_path;

#[derive(Parser, Debug)]
#[command(
    name = "switchyard",
    version,
    about = "A declarative, DB-less API gateway for Kong and Ocelot configs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ConfigDir {
    /// Directory holding kong.yaml / ocelot.json / ocelot.*.json / ocelot.global.json.
    #[arg(long, env = "SWITCHYARD_CONFIG_DIR", default_value = ".")]
    pub config_dir: PathBuf,
    /// Environment name: ocelot.NAME.json is layered over the merged Ocelot files, as ASP.NET
    /// does (default: ASPNETCORE_ENVIRONMENT).
    #[arg(long, env = "SWITCHYARD_ENVIRONMENT", value_name = "NAME")]
    pub environment: Option<String>,
    /// Where filter_chains find their Proxy-Wasm filters: `<name>.wasm` (Kong's
    /// wasm_filters_path; default: CONFIG_DIR/filters).
    #[arg(long, env = "SWITCHYARD_WASM_FILTERS_PATH", value_name = "DIR")]
    pub wasm_filters_path: Option<PathBuf>,
    /// How long one Proxy-Wasm hook may run before it is stopped and its request answered
    /// 500.
    #[arg(
        long,
        env = "SWITCHYARD_WASM_HOOK_TIMEOUT",
        value_name = "MS",
        default_value_t = 20
    )]
    pub wasm_hook_timeout: u64,
    /// The linear memory one Proxy-Wasm filter instance may grow to.
    #[arg(
        long,
        env = "SWITCHYARD_WASM_MEMORY_LIMIT",
        value_name = "MIB",
        default_value_t = 64
    )]
    pub wasm_memory_limit: usize,
}

/// Kong's `trusted_ips`, `real_ip_header` and `real_ip_recursive`.
#[derive(clap::Args, Debug, Clone)]
pub struct RealIpArgs {
    /// Proxies trusted to name the client (addresses, ranges or CIDRs, comma-separated);
    /// default none: the client is the connection's peer.
    #[arg(
        long,
        env = "SWITCHYARD_TRUSTED_IPS",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_ips: Vec<String>,
    /// The header a trusted proxy names the client in.
    #[arg(long, env = "SWITCHYARD_REAL_IP_HEADER", default_value = "X-Real-IP")]
    pub real_ip_header: String,
    /// With X-Forwarded-For: the client is the last address that is not trusted, not the last.
    #[arg(long, env = "SWITCHYARD_REAL_IP_RECURSIVE")]
    pub real_ip_recursive: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the configuration in the config directory.
    Run {
        #[command(flatten)]
        dir: ConfigDir,
        /// Proxy listen address (repeatable).
        #[arg(
            long = "listen",
            env = "SWITCHYARD_LISTEN",
            value_delimiter = ',',
            default_value = "0.0.0.0:8000"
        )]
        listen: Vec<SocketAddr>,
        /// TLS proxy listen address (repeatable), like Kong's `proxy_listen ... ssl`:
        /// certificates by SNI from the config's `certificates`, else the default one.
        #[arg(
            long = "listen-tls",
            env = "SWITCHYARD_LISTEN_TLS",
            value_delimiter = ','
        )]
        listen_tls: Vec<SocketAddr>,
        /// The TLS listeners' default certificate (PEM chain), used when no SNI matches;
        /// without it a self-signed one is generated at start.
        #[arg(long, env = "SWITCHYARD_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The default certificate's private key (PEM).
        #[arg(long, env = "SWITCHYARD_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Admin API listen address.
        #[arg(
            long,
            env = "SWITCHYARD_ADMIN_LISTEN",
            default_value = "127.0.0.1:8001"
        )]
        admin_listen: SocketAddr,
        /// Worker threads (default: the number of cores).
        #[arg(long, env = "SWITCHYARD_WORKERS")]
        workers: Option<usize>,
        /// Poll the config files every MS milliseconds instead of watching for events
        /// (for NFS and bind mounts whose events never arrive).
        #[arg(long, env = "SWITCHYARD_WATCH_POLL", value_name = "MS")]
        watch_poll: Option<u64>,
        /// Do not reload on file changes (SIGHUP and POST /reload still reload).
        #[arg(long, env = "SWITCHYARD_NO_WATCH")]
        no_watch: bool,
        /// How long a client may take to send the rest of a request head once some of it
        /// came: past it the answer is 408 and the connection closes. A kept-alive
        /// connection with no byte of a new request closes silently after 60 s.
        #[arg(
            long,
            env = "SWITCHYARD_CLIENT_HEADER_TIMEOUT",
            value_name = "MS",
            default_value_t = 60_000
        )]
        client_header_timeout: u64,
        #[command(flatten)]
        real_ip: RealIpArgs,
    },
    /// Validate the configuration; print every error as file:line:column: path: message.
    Check {
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Print the effective merged configuration as JSON, defaults filled in.
    Config {
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Show which route a request would take, why, and why every other candidate lost.
    Explain {
        #[command(flatten)]
        dir: ConfigDir,
        /// HTTP method, e.g. GET.
        method: String,
        /// Full URL, e.g. http://example.com/api/users?x=1
        url: String,
        /// Request header, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
    },
}

/// The `switchyard` binary: the bundled plugins only.
pub fn main() -> ExitCode {
    crate::gateway::Builder::new().main()
}

/// The command line of a gateway with `builder`'s plugins.
pub fn main_with(mut builder: crate::gateway::Builder) -> ExitCode {
    let cli = Cli::parse();
    let (Command::Run { dir, .. }
    | Command::Check { dir }
    | Command::Config { dir }
    | Command::Explain { dir, .. }) = &cli.command;
    loader::set_environment(dir.environment.clone());
    crate::wasm::set_filters_path(dir.wasm_filters_path.clone());
    crate::wasm::set_limits(crate::wasm::Limits {
        hook_deadline: std::time::Duration::from_millis(dir.wasm_hook_timeout.max(1)),
        memory: dir.wasm_memory_limit.max(1) << 20,
        ..crate::wasm::Limits::DEFAULT
    });
    match cli.command {
        Command::Run {
            dir,
            listen,
            listen_tls,
            tls_cert,
            tls_key,
            admin_listen,
            workers,
            watch_poll,
            no_watch,
            client_header_timeout,
            real_ip,
        } => {
            builder = builder.client_header_timeout(std::time::Duration::from_millis(
                client_header_timeout.max(1),
            ));
            if !real_ip.trusted_ips.is_empty() {
                match RealIp::parse(
                    &real_ip.trusted_ips,
                    &real_ip.real_ip_header,
                    real_ip.real_ip_recursive,
                ) {
                    Ok(r) => builder = builder.real_ip(r),
                    Err(e) => {
                        eprintln!("switchyard: --trusted-ips: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            let watch = if no_watch {
                Watch::Off
            } else {
                watch_poll.map_or(Watch::Events, |ms| {
                    Watch::Poll(std::time::Duration::from_millis(ms.max(10)))
                })
            };
            let settings = Settings {
                listen,
                tls: TlsSettings {
                    listen: listen_tls,
                    cert: tls_cert,
                    key: tls_key,
                },
                admin: admin_listen,
                workers,
                watch,
            };
            run(dir.config_dir, builder, settings)
        }
        Command::Check { dir } => check(&dir.config_dir, builder.registry()),
        Command::Config { dir } => print_config(&dir.config_dir, builder.registry()),
        Command::Explain {
            dir,
            method,
            url,
            headers,
        } => explain(&dir.config_dir, builder.registry(), &method, &url, &headers),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a terminal: piped into a container's log, escape codes are noise.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .try_init();
}

fn print_diagnostics(items: &[Diagnostic]) {
    for d in items {
        eprintln!("{d}");
    }
}

/// How `run` notices config changes.
enum Watch {
    Events,
    Poll(std::time::Duration),
    Off,
}

/// What `run` serves on.
struct Settings {
    listen: Vec<SocketAddr>,
    tls: TlsSettings,
    admin: SocketAddr,
    workers: Option<usize>,
    watch: Watch,
}

/// The TLS listeners and their default certificate's files.
struct TlsSettings {
    listen: Vec<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// Binds the TLS listeners and makes their configuration; `Ok(None)` without any.
fn tls_listeners(
    gw: &Arc<crate::gateway::Gateway>,
    tls: &TlsSettings,
    workers: usize,
) -> Result<Option<(Vec<SocketAddr>, crate::proxy::server::TlsListeners)>, String> {
    use crate::proxy::tls::{DefaultCertificate, server_config};
    if tls.listen.is_empty() {
        return Ok(None);
    }
    let default = DefaultCertificate::load(tls.cert.as_deref(), tls.key.as_deref())
        .map_err(|e| format!("TLS default certificate: {e}"))?;
    tracing::info!(certificate = %default.description, "TLS default certificate");
    let config = server_config(gw.clone(), &default).map_err(|e| e.to_string())?;
    let (bound, per_worker) = crate::proxy::server::bind_all(&tls.listen, workers)
        .map_err(|e| format!("cannot listen on {:?} (TLS): {e}", tls.listen))?;
    Ok(Some((
        bound,
        crate::proxy::server::TlsListeners { per_worker, config },
    )))
}

fn run(dir: PathBuf, builder: crate::gateway::Builder, settings: Settings) -> ExitCode {
    let Settings {
        listen,
        tls,
        admin,
        workers,
        watch,
    } = settings;
    init_logging();
    let t = Instant::now();
    let (gw, warnings) = match builder.start(dir.clone()) {
        Ok(x) => x,
        Err(e) => {
            print_diagnostics(&e.0);
            eprintln!(
                "switchyard: {} error(s) in {}; not starting",
                e.0.iter().filter(|d| d.severity == Severity::Error).count(),
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let snap = gw.snapshot();
    for line in unserved_lines(&snap) {
        tracing::warn!("{line}");
    }
    for line in closed_lines(&snap) {
        tracing::warn!("closed: {line}");
    }
    let workers = workers
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    let (bound, listeners) = match crate::proxy::server::bind_all(&listen, workers) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("switchyard: cannot listen on {listen:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (tls_bound, tls_listeners) = match tls_listeners(&gw, &tls, workers) {
        Ok(Some((bound, l))) => (bound, Some(l)),
        Ok(None) => (Vec::new(), None),
        Err(e) => {
            eprintln!("switchyard: {e}");
            return ExitCode::FAILURE;
        }
    };
    let admin_listener = match crate::admin::bind(admin) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("switchyard: cannot listen on {admin} (admin): {e}");
            return ExitCode::FAILURE;
        }
    };
    let admin_addr = admin_listener.local_addr().unwrap_or(admin);
    tracing::info!(
        services = snap.model.services.len(),
        routes = snap.model.routes.len(),
        plugins = snap.model.plugins.len(),
        load_ms = format!("{:.1}", t.elapsed().as_secs_f64() * 1e3),
        listen = ?bound,
        listen_tls = ?tls_bound,
        admin = %admin_addr,
        workers,
        "switchyard ready"
    );
    drop(snap);
    let handles = crate::proxy::server::spawn_workers_tls(gw.clone(), listeners, tls_listeners);
    let watcher = match watch {
        Watch::Events => crate::watch::spawn(gw.clone(), None).map(Some),
        Watch::Poll(every) => crate::watch::spawn(gw.clone(), Some(every)).map(Some),
        Watch::Off => Ok(None),
    };
    if let Err(e) = watcher {
        tracing::error!(error = %e, "cannot start the config watcher; reload with SIGHUP or POST /reload");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("control runtime");
    rt.block_on(async move {
        let admin = tokio::net::TcpListener::from_std(admin_listener).expect("admin listener");
        tokio::spawn(crate::admin::serve(gw.clone(), admin));
        let hup_gw = gw.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                let gw = hup_gw.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let r = gw.reload();
                    if !r.ok {
                        for e in &r.errors {
                            tracing::error!("{e}");
                        }
                    }
                })
                .await;
            }
        });
        shutdown_signal().await;
        tracing::info!("switchyard stopping");
    });
    drop(handles);
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// What parses and is checked but is not served, and lets traffic pass without it.
fn unserved_lines(snap: &Snapshot) -> impl Iterator<Item = String> + '_ {
    snap.unserved.iter().map(|(kind, origin)| {
        format!(
            "{}:{}: warning: {}: {}: parsed and checked, not served yet",
            origin.file, origin.line, origin.path, kind
        )
    })
}

/// Each closed route and what closes it.
fn closed_lines(snap: &Snapshot) -> impl Iterator<Item = String> + '_ {
    snap.closed_routes().map(|(route, closed)| {
        format!(
            "{route}: answers 503; not enforced yet: {}",
            closed.reasons.join("; ")
        )
    })
}

/// Loads and compiles as `run` does; on errors prints them all and fails.
fn compile(dir: &std::path::Path, registry: &Registry) -> Result<(Snapshot, usize), ExitCode> {
    compile_dir(dir, registry).map_err(|e| {
        print_diagnostics(&e.0);
        let errors = e.0.iter().filter(|d| d.severity == Severity::Error).count();
        eprintln!("{errors} error(s)");
        ExitCode::FAILURE
    })
}

/// Loads and compiles exactly as `run` does, so that what `check` accepts is what serves.
fn check(dir: &std::path::Path, registry: &Registry) -> ExitCode {
    let (snap, files) = match compile(dir, registry) {
        Ok(x) => x,
        Err(code) => return code,
    };
    print_diagnostics(&snap.warnings);
    for line in unserved_lines(&snap) {
        eprintln!("{line}");
    }
    let closed: Vec<String> = closed_lines(&snap).collect();
    if !closed.is_empty() {
        eprintln!(
            "closed routes ({}): they carry plugins or options switchyard does not enforce yet, and answer 503 naming them:",
            closed.len()
        );
        for line in &closed {
            eprintln!("  {line}");
        }
    }
    let m = &snap.model;
    println!(
        "ok: {} file(s), {} service(s), {} route(s), {} upstream(s), {} plugin(s), {} consumer(s), {} ocelot route(s), {} ocelot aggregate(s), {} closed route(s)",
        files,
        m.services.len(),
        m.routes.len(),
        m.upstreams.len(),
        m.plugins.len(),
        m.consumers.len(),
        m.ocelot_routes.len(),
        m.ocelot_aggregates.len(),
        closed.len()
    );
    ExitCode::SUCCESS
}

fn print_config(dir: &std::path::Path, registry: &Registry) -> ExitCode {
    let snap = match compile(dir, registry) {
        Ok((snap, _)) => snap,
        Err(code) => return code,
    };
    let out = crate::admin::config_json(&snap.model);
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    ExitCode::SUCCESS
}

fn explain(
    dir: &std::path::Path,
    registry: &Registry,
    method: &str,
    url: &str,
    headers: &[String],
) -> ExitCode {
    let snap = match compile(dir, registry) {
        Ok((snap, _)) => snap,
        Err(code) => return code,
    };
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("invalid URL {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        eprintln!("invalid method {method}");
        return ExitCode::FAILURE;
    };
    let mut map = http::HeaderMap::new();
    for h in headers {
        let Some((k, v)) = h.split_once(':') else {
            eprintln!("invalid header {h:?}: expected `Name: value`");
            return ExitCode::FAILURE;
        };
        match (
            http::HeaderName::from_bytes(k.trim().as_bytes()),
            http::HeaderValue::from_str(v.trim()),
        ) {
            (Ok(k), Ok(v)) => {
                map.append(k, v);
            }
            _ => {
                eprintln!("invalid header {h:?}");
                return ExitCode::FAILURE;
            }
        }
    }
    let host_header = map
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let (host, port) =
        crate::config::kong::split_host_port(&host_header).unwrap_or((&host_header, None));
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let path = normalize_path(uri.path());
    let req = RouteRequest {
        method: &method,
        host,
        port: port.unwrap_or(default_port),
        path: &path,
        query: uri.query(),
        headers: &map,
        // An https URL is taken as a TLS request whose SNI is its host.
        sni: (uri.scheme_str() == Some("https")).then_some(host),
    };
    let verdicts = snap.router.explain(&req);
    println!(
        "request: {method} host={host} port={} path={path}",
        port.unwrap_or(default_port)
    );
    let describe = |rank: usize| {
        let m = &snap.router.matchers[rank];
        format!("{} [{}]", snap.route_label(m.route), m.describe_priority())
    };
    let mut winner = None;
    for (rank, v) in &verdicts {
        if v.is_ok() {
            winner = Some(*rank);
            break;
        }
    }
    match winner {
        Some(w) => {
            let dest = snap
                .router
                .find(&req)
                .map(|m| snap.route_destination(&m, &path, uri.query()))
                .unwrap_or_default();
            println!("matched: {} -> {dest}", describe(w));
            println!(
                "  why: every condition it sets matches, and it ranks first among the matches"
            );
            println!("  precedence: {}", crate::snapshot::PRECEDENCE);
        }
        None => println!("matched: nothing (404 no Route matched with those values)"),
    }
    let mut shown = 0;
    for (rank, v) in &verdicts {
        if Some(*rank) == winner {
            continue;
        }
        let why = match v {
            Ok(_) => "also matches, but ranks lower".to_string(),
            Err(Miss::Path) => continue,
            Err(miss) => format!("path matches, but {miss}"),
        };
        if shown == 0 {
            println!("other candidates, in precedence order:");
        }
        shown += 1;
        println!("  {}: {why}", describe(*rank));
    }
    if shown == 0 {
        println!("no other candidate matched the path");
    }
    ExitCode::SUCCESS
}
