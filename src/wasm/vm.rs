//! One instance of a filter module and the calls into it, in the order the cpp host and
//! Kong make them. Each worker thread keeps one `Vm` per module (`with`), reused by every
//! request: a root context per filter config (made on first use: context_create, vm_start,
//! configure), an HTTP context per request and filter.
//!
//! A call that traps, runs past its epoch deadline or hits the memory cap poisons the
//! instance (a Rust-SDK guest's state is not to be trusted after a panic): `with` drops it,
//! and the next request on this thread gets a new one, with a new `generation`, so that the
//! contexts of requests still in flight on the old one are known to be gone.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use wasmtime::{Store, StoreLimitsBuilder, Trap, TypedFunc};

use super::abi::Action;
use super::host::{Call, CallResponse, Dispatch, HostState};
use super::modules::{Filter, Module, engine};
use super::{EPOCH_TICK, Limits};

/// Why a filter call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    #[error("trapped: {0}")]
    Trap(String),
    #[error("ran past its deadline of {0:?} and was stopped")]
    Deadline(Duration),
    #[error("proxy_on_vm_start returned false")]
    VmStart,
    #[error("proxy_on_configure returned false: the filter rejected its configuration")]
    Configure,
    #[error("its instance failed earlier in this request and was replaced")]
    Gone,
}

impl Failure {
    /// The instance cannot be trusted after this.
    fn poisons(&self) -> bool {
        matches!(self, Failure::Trap(_) | Failure::Deadline(_))
    }

    fn of(e: wasmtime::Error, deadline: Duration) -> Failure {
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => return Failure::Deadline(deadline),
            // The backtrace (with the filter's own frames) goes to the debug log; a Rust
            // filter logged its panic message just before.
            Some(trap) => {
                tracing::debug!("filter trap: {e:?}");
                return Failure::Trap(trap.to_string());
            }
            None => {}
        }
        let mut text = format!("{e:#}");
        if let Some(cut) = text.char_indices().nth(600).map(|(i, _)| i) {
            text.truncate(cut);
            text.push('…');
        }
        Failure::Trap(text.replace('\n', " "))
    }
}

/// The HTTP hooks.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
}

type Hook3 = TypedFunc<(i32, i32, i32), i32>;
/// HTTP calls root contexts dispatched, with the root each is for.
type RootCalls = Vec<(u32, Dispatch)>;
/// `proxy_on_http_call_response(root, token, headers, body size, trailers)`.
type CallAnswer = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The module's exports the host calls (each optional, as the ABI has them).
struct Exports {
    context_create: Option<TypedFunc<(i32, i32), ()>>,
    vm_start: Option<TypedFunc<(i32, i32), i32>>,
    configure: Option<TypedFunc<(i32, i32), i32>>,
    hooks: [Option<Hook3>; 4],
    http_call_response: Option<CallAnswer>,
    tick: Option<TypedFunc<i32, ()>>,
    done: Option<TypedFunc<i32, i32>>,
    log: Option<TypedFunc<i32, ()>>,
    delete: Option<TypedFunc<i32, ()>>,
}

pub struct Vm {
    store: Store<HostState>,
    ex: Exports,
    /// Tells this instance from the one before it on the same thread.
    pub generation: u64,
    next_id: u32,
    /// Root context by filter key.
    roots: HashMap<u64, u32>,
    limits: Limits,
    /// A ticker task runs for this instance.
    ticking: bool,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

fn ticks(d: Duration) -> u64 {
    (d.as_millis() / EPOCH_TICK.as_millis().max(1)) as u64 + 1
}

impl Vm {
    /// A new instance of `module`, initialised (`_initialize`, else `_start`).
    pub fn new(module: &Module, limits: Limits) -> Result<Vm, Failure> {
        let state = HostState {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory)
                .trap_on_grow_failure(true)
                .build(),
            memory: None,
            malloc: None,
            call: Call::default(),
            module: module.name.clone(),
            last_token: 0,
            ticks: Vec::new(),
        };
        let mut store = Store::new(engine(), state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(ticks(limits.load_deadline));
        let fail = |e| Failure::of(e, limits.load_deadline);
        let instance = module.pre.instantiate(&mut store).map_err(fail)?;
        let memory = instance.get_memory(&mut store, "memory");
        let malloc = instance
            .get_typed_func::<i32, i32>(&mut store, "malloc")
            .or_else(|_| instance.get_typed_func(&mut store, "proxy_on_memory_allocate"))
            .ok();
        (store.data_mut().memory, store.data_mut().malloc) = (memory, malloc);
        let mut get = |name: &str| instance.get_func(&mut store, name);
        let start = get("_initialize").or_else(|| get("_start"));
        macro_rules! typed {
            ($name:expr) => {
                instance.get_typed_func(&mut store, $name).ok()
            };
        }
        let ex = Exports {
            context_create: typed!("proxy_on_context_create"),
            vm_start: typed!("proxy_on_vm_start"),
            configure: typed!("proxy_on_configure"),
            hooks: [
                typed!("proxy_on_request_headers"),
                typed!("proxy_on_request_body"),
                typed!("proxy_on_response_headers"),
                typed!("proxy_on_response_body"),
            ],
            http_call_response: typed!("proxy_on_http_call_response"),
            tick: typed!("proxy_on_tick"),
            done: typed!("proxy_on_done"),
            log: typed!("proxy_on_log"),
            delete: typed!("proxy_on_delete"),
        };
        if let Some(start) = start {
            start
                .typed::<(), ()>(&store)
                .and_then(|f| f.call(&mut store, ()))
                .map_err(fail)?;
        }
        Ok(Vm {
            store,
            ex,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            next_id: 0,
            roots: HashMap::new(),
            limits,
            ticking: false,
        })
    }

    fn next_id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// What the next hook sees.
    pub fn call(&mut self) -> &mut Call {
        &mut self.store.data_mut().call
    }

    /// The root context of `filter`'s config in this instance, made on first use.
    pub fn root(&mut self, filter: &Filter) -> Result<u32, Failure> {
        if let Some(&id) = self.roots.get(&filter.key) {
            return Ok(id);
        }
        let id = self.next_id();
        *self.call() = Call {
            filter: Some(filter.name.clone()),
            root_id: id,
            config: filter.config.clone(),
            ..Call::default()
        };
        let deadline = self.limits.load_deadline;
        self.store.set_epoch_deadline(ticks(deadline));
        let fail = |e| Failure::of(e, deadline);
        let (root, len) = (id as i32, filter.config.len() as i32);
        if let Some(f) = &self.ex.context_create {
            f.call(&mut self.store, (root, 0)).map_err(fail)?;
        }
        let started = match &self.ex.vm_start {
            Some(f) => f.call(&mut self.store, (root, 0)).map_err(fail)?,
            None => 1,
        };
        if started == 0 {
            return Err(Failure::VmStart);
        }
        let configured = match &self.ex.configure {
            Some(f) => f.call(&mut self.store, (root, len)).map_err(fail)?,
            None => 1,
        };
        *self.call() = Call::default();
        if configured == 0 {
            return Err(Failure::Configure);
        }
        self.roots.insert(filter.key, id);
        Ok(id)
    }

    /// A new HTTP context under `root`.
    pub fn stream(&mut self, root: u32) -> Result<u32, Failure> {
        let id = self.next_id();
        let deadline = self.limits.hook_deadline;
        self.store.set_epoch_deadline(ticks(deadline));
        if let Some(f) = &self.ex.context_create {
            f.call(&mut self.store, (id as i32, root as i32))
                .map_err(|e| Failure::of(e, deadline))?;
        }
        Ok(id)
    }

    /// Runs `hook` for context `id` with its two arguments (a count or size, and
    /// end_of_stream).
    pub fn hook(&mut self, hook: Hook, id: u32, n: usize, end: bool) -> Result<Action, Failure> {
        let Some(f) = &self.ex.hooks[hook as usize] else {
            return Ok(Action::Continue);
        };
        let deadline = self.limits.hook_deadline;
        self.store.set_epoch_deadline(ticks(deadline));
        f.call(&mut self.store, (id as i32, n as i32, i32::from(end)))
            .map(Action::from_i32)
            .map_err(|e| Failure::of(e, deadline))
    }

    /// The answer to HTTP call `token`, which a context under `root` dispatched (read from
    /// `Call::http_response`: `None` tells the filter the call failed).
    pub fn http_call_response(&mut self, root: u32, token: u32) -> Result<Action, Failure> {
        let Some(f) = &self.ex.http_call_response else {
            return Ok(Action::Continue);
        };
        let (n, len) = match &self.store.data().call.http_response {
            Some(r) => (r.headers.len() + 1, r.body.len()),
            None => (0, 0),
        };
        let deadline = self.limits.hook_deadline;
        self.store.set_epoch_deadline(ticks(deadline));
        let args = (root as i32, token as i32, n as i32, len as i32, 0);
        f.call(&mut self.store, args)
            .map(|()| Action::Continue)
            .map_err(|e| Failure::of(e, deadline))
    }

    /// A root context set a timer and no ticker runs for this instance yet: the caller
    /// starts one (`ticker`) and this answers false from then on.
    pub fn wants_ticker(&mut self) -> bool {
        let wants = !self.ticking && !self.store.data().ticks.is_empty();
        self.ticking |= wants;
        wants
    }

    /// Runs the timers that are due: how long until the next one (`None`: no timers), and
    /// the HTTP calls the timers dispatched, with the root context each is for.
    fn tick(&mut self) -> Result<(Option<Duration>, RootCalls), Failure> {
        let now = std::time::Instant::now();
        let mut calls = Vec::new();
        let due: Vec<u32> = self
            .store
            .data()
            .ticks
            .iter()
            .filter(|t| t.next <= now)
            .map(|t| t.root)
            .collect();
        for root in due {
            let state = self.store.data_mut();
            if let Some(t) = state.ticks.iter_mut().find(|t| t.root == root) {
                t.next = now + t.period;
            }
            state.call = Call {
                root_id: root,
                ..Call::default()
            };
            let Some(f) = &self.ex.tick else { continue };
            let deadline = self.limits.hook_deadline;
            self.store.set_epoch_deadline(ticks(deadline));
            let out = f.call(&mut self.store, root as i32);
            let call = std::mem::take(&mut self.store.data_mut().call);
            out.map_err(|e| Failure::of(e, deadline))?;
            calls.extend(call.dispatches.into_iter().map(|d| (root, d)));
        }
        let next = self.store.data().ticks.iter().map(|t| t.next).min();
        let wait = next.map(|n| n.saturating_duration_since(std::time::Instant::now()));
        Ok((wait, calls))
    }

    /// Hands root context `root` the answer to its call `token`; the calls it dispatched
    /// from there.
    fn root_answer(
        &mut self,
        root: u32,
        token: u32,
        answer: Option<CallResponse>,
    ) -> Result<RootCalls, Failure> {
        self.store.data_mut().call = Call {
            root_id: root,
            http_response: answer,
            ..Call::default()
        };
        let out = self.http_call_response(root, token);
        let call = std::mem::take(&mut self.store.data_mut().call);
        out?;
        Ok(call.dispatches.into_iter().map(|d| (root, d)).collect())
    }

    /// The end of context `id`: done, log, delete (Kong calls them back to back; done's
    /// answer is not waited on).
    pub fn finish(&mut self, id: u32) -> Result<(), Failure> {
        let deadline = self.limits.hook_deadline;
        let fail = |e| Failure::of(e, deadline);
        let id = id as i32;
        self.store.set_epoch_deadline(ticks(deadline));
        if let Some(f) = &self.ex.done {
            f.call(&mut self.store, id).map_err(fail)?;
        }
        self.store.set_epoch_deadline(ticks(deadline));
        if let Some(f) = &self.ex.log {
            f.call(&mut self.store, id).map_err(fail)?;
        }
        self.store.set_epoch_deadline(ticks(deadline));
        if let Some(f) = &self.ex.delete {
            f.call(&mut self.store, id).map_err(fail)?;
        }
        Ok(())
    }
}

thread_local! {
    /// This thread's instance of each module in use.
    static VMS: RefCell<Vec<(Weak<Module>, Vm)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's instance of `module` (made if there is none). `generation`:
/// the instance a request's contexts live in; another one fails with `Failure::Gone`. A
/// failure that poisons the instance drops it.
pub fn with<R>(
    module: &Arc<Module>,
    generation: Option<u64>,
    f: impl FnOnce(&mut Vm) -> Result<R, Failure>,
) -> Result<R, Failure> {
    VMS.with(|cell| {
        let mut vms = cell.borrow_mut();
        let at = vms
            .iter()
            .position(|(m, _)| std::ptr::eq(m.as_ptr(), Arc::as_ptr(module)));
        let at = match at {
            Some(at) => at,
            // The request's contexts lived in an instance that is gone.
            None if generation.is_some() => return Err(Failure::Gone),
            None => {
                vms.retain(|(m, _)| m.strong_count() > 0);
                vms.push((Arc::downgrade(module), Vm::new(module, super::limits())?));
                vms.len() - 1
            }
        };
        let vm = &mut vms[at].1;
        if generation.is_some_and(|g| g != vm.generation) {
            return Err(Failure::Gone);
        }
        let out = f(vm);
        if let Err(e) = &out
            && e.poisons()
        {
            *vm.call() = Call::default();
            vms.swap_remove(at);
        }
        out
    })
}

/// Runs the timers of this thread's instance `generation` of `module` until the instance or
/// the module is gone. Spawned on the worker's runtime, so it runs on the instance's thread.
pub async fn ticker(module: Weak<Module>, generation: u64) {
    let name = module
        .upgrade()
        .map_or_else(|| "?".into(), |m| m.name.to_string());
    loop {
        let Some(m) = module.upgrade() else { return };
        let ticked = with(&m, Some(generation), Vm::tick);
        drop(m);
        let (wait, mut calls) = match ticked {
            Ok((Some(wait), calls)) => (wait, calls),
            Ok((None, _)) | Err(Failure::Gone) => return,
            Err(e) => {
                tracing::error!(module = %name, "Proxy-Wasm filter failed in on_tick: {e}");
                return;
            }
        };
        // Calls from timers (and from their answers) go back to the root context.
        while !calls.is_empty() {
            let roots: HashMap<u32, u32> = calls.iter().map(|(r, d)| (d.token, *r)).collect();
            let answers =
                super::calls::fetch_all(calls.into_iter().map(|(_, d)| d).collect()).await;
            calls = Vec::new();
            let Some(m) = module.upgrade() else { return };
            for (token, answer) in answers {
                let root = roots.get(&token).copied().unwrap_or_default();
                match with(&m, Some(generation), |vm| {
                    vm.root_answer(root, token, answer)
                }) {
                    Ok(more) => calls.extend(more),
                    Err(Failure::Gone) => return,
                    Err(e) => {
                        tracing::error!(module = %name, "Proxy-Wasm filter failed in on_http_call_response: {e}");
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}
