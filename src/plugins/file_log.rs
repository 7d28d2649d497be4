//! `file-log` (PRIORITY 9): in Kong, appends every request's log entry (JSON, one line) to a
//! file. Not served yet: its config is checked against Kong's schema, and the routes it
//! applies to are warned about (it only observes).

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use super::schema::typedefs::{check_lua_code, check_string};
use super::{BuildCx, Checks, Kind, Plugin, PluginSpec, Validate};

/// The plugin's `config` (Kong's `kong/plugins/file-log/schema.lua`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub path: String,
    #[serde(default)]
    pub reopen: bool,
    pub custom_fields_by_lua: Option<IndexMap<String, String>>,
}

/// Kong's pattern for `path`: `^[^%s*&%%\`][^*&%%\`]*[^%s*&%%\`]$` (at least two bytes, none
/// of `*&%` and backquote, no white space at either end).
fn valid_filename(path: &str) -> bool {
    let special = |b: &u8| b"*&%`".contains(b);
    let edge = |b: &u8| !special(b) && !b" \t\n\r\x0b\x0c".contains(b);
    let bytes = path.as_bytes();
    match bytes {
        [first, middle @ .., last] => edge(first) && edge(last) && !middle.iter().any(special),
        _ => false,
    }
}

impl Validate for Config {
    fn validate(&self, c: &mut Checks) {
        check_string(c, "path", &self.path, |path| {
            if valid_filename(path) {
                Ok(())
            } else {
                Err("not a valid filename".to_string())
            }
        });
        check_lua_code(
            c,
            "custom_fields_by_lua",
            self.custom_fields_by_lua.as_ref(),
        );
    }
}

/// `file-log` (PRIORITY 9).
pub struct FileLog;

impl PluginSpec for FileLog {
    const NAME: &'static str = "file-log";
    const PRIORITY: i32 = 9;
    const KIND: Kind = Kind::Observes;
    type Config = Config;

    fn build(_: Self::Config, _: &mut BuildCx<'_>) -> Result<Option<Arc<dyn Plugin>>, String> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::parse;

    #[test]
    fn defaults_and_fields() {
        let c: Config = parse("path: /tmp/file.log").unwrap();
        assert_eq!(c.path, "/tmp/file.log");
        assert!(!c.reopen);
        assert!(c.custom_fields_by_lua.is_none());
        let c: Config =
            parse("path: /var/log/kong.log\nreopen: true\ncustom_fields_by_lua: {a: return 1}")
                .unwrap();
        assert!(c.reopen);
        assert_eq!(c.custom_fields_by_lua.unwrap()["a"], "return 1");
        assert_eq!(
            parse::<Config>("{}").unwrap_err(),
            [": missing field `path`"]
        );
    }

    #[test]
    fn rules() {
        for bad in [
            " /tmp/x",
            "/tmp/x ",
            "/tmp/*.log",
            "/tmp/a&b",
            "/tmp/100%",
            "x",
            "`x`",
        ] {
            let errs = parse::<Config>(&format!("path: \"{bad}\"")).unwrap_err();
            assert_eq!(errs, ["path: not a valid filename"], "{bad:?}");
        }
        let errs = parse::<Config>("path: \"\"").unwrap_err();
        assert_eq!(errs, ["path: length must be at least 1"]);
        let errs = parse::<Config>("path: /x\nreopen: \"yes\"").unwrap_err();
        assert_eq!(errs, ["reopen: expected true or false, found `yes`"]);
        let errs = parse::<Config>("path: /x\ncustom_fields_by_lua: {\"\": return 1}").unwrap_err();
        assert_eq!(errs, ["custom_fields_by_lua: length must be at least 1"]);
        let errs = parse::<Config>("path: /x\nrepoen: true").unwrap_err();
        assert_eq!(
            errs,
            ["repoen: unknown field `repoen`; did you mean `reopen`?"]
        );
    }

    /// Real users' files (`/work/shared/realworld/kong`).
    #[test]
    fn real_configs() {
        // DevstackK/Kongllmrouter
        parse::<Config>("path: /dev/stdout\nreopen: false").unwrap();
        // AngelosAnag/Zero-Trust-Network-Thesis (a decK dump)
        parse::<Config>("custom_fields_by_lua: {}\npath: /etc/kong/logfile.log\nreopen: false")
            .unwrap();
    }
}
