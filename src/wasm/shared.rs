//! What filters share across workers and modules: the key-value store with compare-and-swap
//! (`proxy_{get,set}_shared_data`), named queues and metrics. Process-wide, behind one lock
//! each; filters reach them through the host functions only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use super::abi::status;

#[derive(Default)]
struct Data {
    /// key → (value, cas). A cas is never 0: 0 on a set means "no check".
    entries: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    next_cas: u32,
}

fn data() -> &'static Mutex<Data> {
    static DATA: OnceLock<Mutex<Data>> = OnceLock::new();
    DATA.get_or_init(Mutex::default)
}

/// The value under `key` and its cas.
pub fn get(key: &[u8]) -> Option<(Vec<u8>, u32)> {
    let d = data().lock().unwrap_or_else(|e| e.into_inner());
    d.entries.get(key).cloned()
}

/// Sets `key` unless `cas` is non-zero and not the current one.
pub fn set(key: &[u8], value: &[u8], cas: u32) -> i32 {
    let mut d = data().lock().unwrap_or_else(|e| e.into_inner());
    let current = d.entries.get(key).map(|(_, c)| *c);
    if cas != 0 && current.is_some_and(|c| c != cas) {
        return status::CAS_MISMATCH;
    }
    d.next_cas = d.next_cas.wrapping_add(1).max(1);
    let next = d.next_cas;
    d.entries.insert(key.to_vec(), (value.to_vec(), next));
    status::OK
}

#[derive(Default)]
struct Queues {
    /// By id - 1: the name and its items.
    queues: Vec<(Vec<u8>, VecDeque<Vec<u8>>)>,
}

fn queues() -> &'static Mutex<Queues> {
    static QUEUES: OnceLock<Mutex<Queues>> = OnceLock::new();
    QUEUES.get_or_init(Mutex::default)
}

/// The queue called `name` (made if new), by id.
pub fn register_queue(name: &[u8]) -> u32 {
    let mut q = queues().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = q.queues.iter().position(|(n, _)| n == name) {
        return i as u32 + 1;
    }
    q.queues.push((name.to_vec(), VecDeque::new()));
    q.queues.len() as u32
}

/// The queue called `name`, if registered.
pub fn resolve_queue(name: &[u8]) -> Option<u32> {
    let q = queues().lock().unwrap_or_else(|e| e.into_inner());
    q.queues
        .iter()
        .position(|(n, _)| n == name)
        .map(|i| i as u32 + 1)
}

pub fn enqueue(id: u32, value: &[u8]) -> i32 {
    let mut q = queues().lock().unwrap_or_else(|e| e.into_inner());
    match q.queues.get_mut((id as usize).wrapping_sub(1)) {
        Some((_, items)) if items.len() < 10_000 => {
            items.push_back(value.to_vec());
            status::OK
        }
        Some(_) => status::INTERNAL_FAILURE,
        None => status::NOT_FOUND,
    }
}

pub fn dequeue(id: u32) -> Result<Vec<u8>, i32> {
    let mut q = queues().lock().unwrap_or_else(|e| e.into_inner());
    match q.queues.get_mut((id as usize).wrapping_sub(1)) {
        Some((_, items)) => items.pop_front().ok_or(status::EMPTY),
        None => Err(status::NOT_FOUND),
    }
}

/// A metric a filter defined: its kind (0 counter, 1 gauge, 2 histogram), its name as Kong
/// exports it (`pw.<filter>.<name>`) and its value.
pub struct Metric {
    pub kind: i32,
    pub name: String,
    pub value: i64,
}

fn metrics() -> &'static Mutex<Vec<Metric>> {
    static METRICS: OnceLock<Mutex<Vec<Metric>>> = OnceLock::new();
    METRICS.get_or_init(Mutex::default)
}

/// Defines (or finds) `name` of `kind` for `filter`; its id.
pub fn define_metric(kind: i32, filter: &str, name: &str) -> u32 {
    let full = format!("pw.{filter}.{name}");
    let mut m = metrics().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = m.iter().position(|x| x.name == full && x.kind == kind) {
        return i as u32 + 1;
    }
    m.push(Metric {
        kind,
        name: full,
        value: 0,
    });
    m.len() as u32
}

/// Adds `delta` (counters and gauges) or records `value` (gauges, histograms: the last).
pub fn update_metric(id: u32, value: i64, increment: bool) -> i32 {
    let mut m = metrics().lock().unwrap_or_else(|e| e.into_inner());
    match m.get_mut((id as usize).wrapping_sub(1)) {
        Some(x) if increment && x.kind == 2 => status::BAD_ARGUMENT,
        Some(x) if increment => {
            x.value = x.value.wrapping_add(value);
            status::OK
        }
        Some(x) => {
            x.value = value;
            status::OK
        }
        None => status::NOT_FOUND,
    }
}

pub fn get_metric(id: u32) -> Option<i64> {
    let m = metrics().lock().unwrap_or_else(|e| e.into_inner());
    m.get((id as usize).wrapping_sub(1)).map(|x| x.value)
}

/// Every metric in Prometheus' text format, names made valid (`pw_<filter>_<name>`).
pub fn prometheus_text() -> String {
    let m = metrics().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    for x in m.iter() {
        let name: String = x
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let kind = ["counter", "gauge", "histogram"]
            .get(x.kind as usize)
            .unwrap_or(&"untyped");
        let kind = if *kind == "histogram" { "gauge" } else { kind };
        out.push_str(&format!("# TYPE {name} {kind}\n{name} {}\n", x.value));
    }
    out
}
