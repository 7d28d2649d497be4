//! What a plugin's config schema says beyond its serde type: Kong's `between`, `gt`,
//! `one_of`, `only_one_of`, `at_least_one_of`, `mutually_required` and the like, each
//! problem kept with the field's path inside `config`, every one reported at once.

use std::fmt::Display;

use crate::config::diag::Path;

/// The checks of a config type that serde's types cannot say. Most configs need none.
pub trait Validate {
    fn validate(&self, _checks: &mut Checks) {}
}

/// Collects problems by field path (`redis.host`, `add.headers[2]`).
#[derive(Default, Debug)]
pub struct Checks {
    problems: Vec<(Path, String)>,
}

/// `a.b[2].c` as a path.
pub fn field_path(field: &str) -> Path {
    let mut path = Path::root();
    for part in field.split('.').filter(|p| !p.is_empty()) {
        match part.split_once('[') {
            Some((key, rest)) => {
                path = path.key(key.to_string());
                for idx in rest.split('[') {
                    if let Ok(i) = idx.trim_end_matches(']').parse() {
                        path = path.index(i);
                    }
                }
            }
            None => path = path.key(part.to_string()),
        }
    }
    path
}

impl Checks {
    /// A problem with `field` (a dotted path inside `config`; empty for the config itself).
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push((field_path(field), message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn into_problems(self) -> Vec<(Path, String)> {
        self.problems
    }

    /// Kong's `between = { min, max }`.
    pub fn between<T: PartialOrd + Display>(&mut self, field: &str, value: T, min: T, max: T) {
        if value < min || value > max {
            self.error(field, format!("value should be between {min} and {max}"));
        }
    }

    /// Kong's `gt = n`.
    pub fn greater_than<T: PartialOrd + Display>(&mut self, field: &str, value: T, than: T) {
        if value <= than {
            self.error(field, format!("value must be greater than {than}"));
        }
    }

    /// Kong's `one_of` on a string field.
    pub fn one_of(&mut self, field: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.error(field, format!("expected one of: {}", allowed.join(", ")));
        }
    }

    /// Kong's entity check `only_one_of`: at most one of these fields may be set.
    pub fn only_one_of(&mut self, fields: &[(&str, bool)]) {
        if fields.iter().filter(|(_, set)| *set).count() > 1 {
            let names = quoted(fields);
            for (f, set) in fields {
                if *set {
                    self.error(
                        f,
                        format!("only one of these fields must be non-empty: {names}"),
                    );
                }
            }
        }
    }

    /// Kong's entity check `at_least_one_of`.
    pub fn at_least_one_of(&mut self, fields: &[(&str, bool)]) {
        if !fields.iter().any(|(_, set)| *set) {
            self.error(
                "",
                format!(
                    "at least one of these fields must be non-empty: {}",
                    quoted(fields)
                ),
            );
        }
    }

    /// Kong's entity check `mutually_required`: all of these or none.
    pub fn mutually_required(&mut self, fields: &[(&str, bool)]) {
        let set = fields.iter().filter(|(_, s)| *s).count();
        if set > 0 && set < fields.len() {
            for (f, s) in fields {
                if !*s {
                    self.error(
                        f,
                        format!(
                            "all or none of these fields must be set: {}",
                            quoted(fields)
                        ),
                    );
                }
            }
        }
    }

    /// Kong's `conditional`: when `if_set`, `field` must be set too.
    pub fn required_if(&mut self, field: &str, set: bool, if_set: bool, because: &str) {
        if if_set && !set {
            self.error(field, format!("required field missing ({because})"));
        }
    }

    /// Kong's `typedefs.header_name`.
    pub fn header_name(&mut self, field: &str, value: &str) {
        if http::HeaderName::from_bytes(value.as_bytes()).is_err() {
            self.error(
                field,
                format!(
                    "bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
                ),
            );
        }
    }

    /// A regex that must compile (Kong's `is_regex`).
    pub fn regex(&mut self, field: &str, value: &str) {
        if let Err(e) = regex::Regex::new(value) {
            let e = e.to_string();
            let why = e.lines().last().unwrap_or_default().trim();
            self.error(field, format!("not a valid regex: {why}"));
        }
    }
}

fn quoted(fields: &[(&str, bool)]) -> String {
    fields
        .iter()
        .map(|(f, _)| format!("'config.{f}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Serde defaults Kong's schemas use over and over.
pub mod defaults {
    pub fn yes() -> bool {
        true
    }
}

#[cfg(test)]
pub use testing::parse;

#[cfg(test)]
mod testing {
    use super::{Checks, Path, Validate};

    /// For plugin files' tests: reads `yaml` as a plugin's `config`, as the registry does
    /// (unknown fields, types, then `Validate`), and gives every problem as `path: message`.
    pub fn parse<C: serde::de::DeserializeOwned + Validate>(yaml: &str) -> Result<C, Vec<String>> {
        use crate::config::de::{Captured, Dialect};
        let node = crate::config::node::parse_yaml(yaml).expect("test YAML parses");
        let captured = Captured {
            node,
            path: Path::root(),
        };
        let (value, problems) = captured.deserialize::<C>(Dialect::Kong);
        let mut errors: Vec<String> = problems
            .iter()
            .filter(|p| !p.warning)
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        if let Some(v) = &value {
            let mut checks = Checks::default();
            v.validate(&mut checks);
            errors.extend(
                checks
                    .into_problems()
                    .iter()
                    .map(|(p, m)| format!("{p}: {m}")),
            );
        }
        match value {
            Some(v) if errors.is_empty() => Ok(v),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_messages() {
        assert_eq!(
            field_path("add.headers[2].x").to_string(),
            "add.headers[2].x"
        );
        let mut c = Checks::default();
        c.between("status_code", 999, 100, 599);
        c.only_one_of(&[("allow", true), ("deny", true)]);
        c.at_least_one_of(&[("second", false), ("minute", false)]);
        let p: Vec<String> = c
            .into_problems()
            .iter()
            .map(|(p, m)| format!("{p}: {m}"))
            .collect();
        assert_eq!(
            p,
            [
                "status_code: value should be between 100 and 599",
                "allow: only one of these fields must be non-empty: 'config.allow', 'config.deny'",
                "deny: only one of these fields must be non-empty: 'config.allow', 'config.deny'",
                ": at least one of these fields must be non-empty: 'config.second', 'config.minute'",
            ]
        );
    }
}
