//! The Proxy-Wasm ABI's numbers (spec v0.2.1): statuses, buffer, map and stream types,
//! actions, and the version markers a module exports.

/// `proxy_status_t`.
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const EMPTY: i32 = 7;
    pub const CAS_MISMATCH: i32 = 8;
    pub const INTERNAL_FAILURE: i32 = 10;
}

/// `proxy_buffer_type_t`.
pub mod buffer {
    pub const HTTP_REQUEST_BODY: i32 = 0;
    pub const HTTP_RESPONSE_BODY: i32 = 1;
    pub const VM_CONFIGURATION: i32 = 6;
    pub const PLUGIN_CONFIGURATION: i32 = 7;
}

/// `proxy_map_type_t`.
pub mod map {
    pub const HTTP_REQUEST_HEADERS: i32 = 0;
    pub const HTTP_RESPONSE_HEADERS: i32 = 2;
}

/// `proxy_action_t`: what an HTTP hook asks of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Stop the chain here for this phase (for a body hook: hold the body until its end).
    Pause,
}

impl Action {
    pub fn from_i32(v: i32) -> Action {
        if v == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

/// The ABI a module says it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    V0_2_1,
    V0_2_0,
}

impl Abi {
    /// From the module's export names: `proxy_abi_version_0_2_1` or `_0_2_0`. `Err` holds
    /// the marker of a version the host does not run (0.1.0), if that is what it has.
    pub fn detect<'a>(mut exports: impl Iterator<Item = &'a str>) -> Result<Abi, Option<String>> {
        let mut other = None;
        let found = exports.find_map(|name| match name {
            "proxy_abi_version_0_2_1" => Some(Abi::V0_2_1),
            "proxy_abi_version_0_2_0" => Some(Abi::V0_2_0),
            n if n.starts_with("proxy_abi_version_") => {
                other = Some(n.to_string());
                None
            }
            _ => None,
        });
        found.ok_or(other)
    }
}

/// `proxy_log_level_t`, as `tracing` levels.
pub fn log(level: i32, filter: &str, message: &str) {
    match level {
        0 => tracing::trace!(filter, "{message}"),
        1 => tracing::debug!(filter, "{message}"),
        2 => tracing::info!(filter, "{message}"),
        3 => tracing::warn!(filter, "{message}"),
        _ => tracing::error!(filter, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::Abi;

    #[test]
    fn the_marker_names_the_abi() {
        let detect = |names: &[&str]| Abi::detect(names.iter().copied());
        assert_eq!(
            detect(&["memory", "proxy_abi_version_0_2_1"]),
            Ok(Abi::V0_2_1)
        );
        assert_eq!(
            detect(&["proxy_abi_version_0_2_0", "_start"]),
            Ok(Abi::V0_2_0)
        );
        assert_eq!(
            detect(&["proxy_abi_version_0_1_0"]),
            Err(Some("proxy_abi_version_0_1_0".to_string()))
        );
        assert_eq!(detect(&["malloc"]), Err(None));
    }
}
