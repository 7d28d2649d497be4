//! What a plugin's config schema says beyond its serde type: Kong's `between`, `gt`,
//! `one_of`, `only_one_of`, `at_least_one_of`, `mutually_required` and the like, each
//! problem kept with the field's path inside `config`, every one reported at once.
//!
//! What Kong's plugin schemas share lives beside it, once: the checks of
//! `kong/db/schema/typedefs.lua` (`typedefs`), the Redis record of
//! `kong/tools/redis/schema.lua` (`redis`), the plugin queue record of
//! `kong/tools/queue_schema.lua` (`queue`) and the trace-context propagation record of the
//! tracing plugins (`propagation`).

pub mod propagation;
pub mod queue;
pub mod redis;
pub mod typedefs;

use std::fmt::{self, Display};
use std::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

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

    /// Kong's entity check `only_one_of`: exactly one of these fields is set (none is an
    /// error too). Reported on the config, as Kong reports entity checks.
    pub fn only_one_of(&mut self, fields: &[(&str, bool)]) {
        if fields.iter().filter(|(_, set)| *set).count() != 1 {
            self.error(
                "",
                format!(
                    "exactly one of these fields must be non-empty: {}",
                    quoted(fields)
                ),
            );
        }
    }

    /// Kong's entity check `mutually_exclusive`: at most one of these fields is set.
    pub fn mutually_exclusive(&mut self, fields: &[(&str, bool)]) {
        if fields.iter().filter(|(_, set)| *set).count() > 1 {
            self.error(
                "",
                format!(
                    "only one or none of these fields must be set: {}",
                    quoted(fields)
                ),
            );
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

    /// Kong's `mutually_required` written inside a record at `at` (its names relative to it,
    /// as Kong prints them): reported at each missing field. Like Kong, it does not run when
    /// one of the values is a vault reference.
    pub fn mutually_required_in(&mut self, at: &str, fields: &[(&str, Option<&str>)]) {
        let set = |v: &Option<&str>| v.is_some_and(|s| !s.is_empty());
        let count = fields.iter().filter(|(_, v)| set(v)).count();
        if count == 0
            || count == fields.len()
            || fields
                .iter()
                .any(|(_, v)| v.is_some_and(typedefs::is_reference))
        {
            return;
        }
        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        let message = format!(
            "all or none of these fields must be set: {}",
            quoted_list(&names)
        );
        for (name, value) in fields {
            if !set(value) {
                self.error(&join(at, name), message.clone());
            }
        }
    }

    /// Kong's `conditional`: when `if_set`, `field` must be set too.
    pub fn required_if(&mut self, field: &str, set: bool, if_set: bool, because: &str) {
        if if_set && !set {
            self.error(field, format!("required field missing ({because})"));
        }
    }

    /// Kong's `typedefs.header_name` (`kong.tools.http.validate_header_name`):
    /// `^[a-zA-Z0-9-_]+$`, after the string's implicit `len_min = 1`.
    pub fn header_name(&mut self, field: &str, value: &str) {
        typedefs::check_string(self, field, value, typedefs::header_name_problem);
    }

    /// A regex that must compile (Kong's `is_regex`, PCRE's syntax), after the string's
    /// implicit `len_min = 1`.
    pub fn regex(&mut self, field: &str, value: &str) {
        typedefs::check_string(self, field, value, typedefs::regex_problem);
    }
}

/// The fields of a check on the whole config, as Kong names them (`'config.a', 'config.b'`).
fn quoted(fields: &[(&str, bool)]) -> String {
    let names: Vec<String> = fields.iter().map(|(f, _)| format!("config.{f}")).collect();
    quoted_list(&names)
}

/// Kong's `quoted_list`: `'a', 'b'`.
pub fn quoted_list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("'{}'", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `prefix.field`, or `field` at the top of `config`.
pub fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// A record read field by field, for one that extends another with fields of its own in the
/// same mapping (acme's Redis settings are Kong's shared Redis record and more), which
/// serde's derive cannot do without `flatten`, and `flatten` loses the unknown-field checks.
/// Fields not written keep the record's `Default`.
pub trait Record: Default {
    /// The record's name, for serde.
    const NAME: &'static str;
    /// Every field name: other keys are unknown fields (with a "did you mean").
    const FIELDS: &'static [&'static str];

    /// Reads the value of field `key` from `map`; false when `key` is not one of this
    /// record's own fields.
    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error>;
}

/// `Deserialize::deserialize` for a `Record`.
pub fn deserialize_record<'de, D: Deserializer<'de>, R: Record>(d: D) -> Result<R, D::Error> {
    struct RecordVisitor<R>(PhantomData<R>);

    impl<'de, R: Record> Visitor<'de> for RecordVisitor<R> {
        type Value = R;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "the record {}", R::NAME)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<R, A::Error> {
            let mut record = R::default();
            while let Some(key) = map.next_key::<String>()? {
                if !record.read_field(&key, &mut map)? {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(record)
        }
    }

    d.deserialize_struct(R::NAME, R::FIELDS, RecordVisitor(PhantomData))
}

/// `a` then `b`, as one list of field names (for a `Record` that extends another).
pub const fn concat_fields<const A: usize, const B: usize, const N: usize>(
    a: [&'static str; A],
    b: [&'static str; B],
) -> [&'static str; N] {
    assert!(A + B == N, "N must be A + B");
    let mut out = [""; N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// Serde defaults Kong's schemas use over and over.
pub mod defaults {
    pub fn yes() -> bool {
        true
    }
}

#[cfg(test)]
pub use testing::{parse, problems};

#[cfg(test)]
mod testing {
    use super::{Checks, Path, Validate};

    /// Each problem as `path: message`.
    pub fn problems(checks: Checks) -> Vec<String> {
        checks
            .into_problems()
            .iter()
            .map(|(p, m)| format!("{p}: {m}"))
            .collect()
    }

    /// For plugin files' tests: reads `yaml` as a plugin's `config`, as the registry does
    /// (unknown fields, types, then `Validate`), and gives every problem as `path: message`.
    pub fn parse<C: serde::de::DeserializeOwned + Validate>(yaml: &str) -> Result<C, Vec<String>> {
        use crate::config::de::{Captured, Dialect};
        let node = crate::config::node::parse_yaml(yaml).expect("test YAML parses");
        let captured = Captured {
            node,
            path: Path::root(),
        };
        let (value, de_problems) = captured.deserialize::<C>(Dialect::Kong);
        let mut errors: Vec<String> = de_problems
            .iter()
            .filter(|p| !p.warning)
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        if let Some(v) = &value {
            let mut checks = Checks::default();
            v.validate(&mut checks);
            errors.extend(problems(checks));
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
        c.only_one_of(&[("allow", false), ("deny", false)]);
        c.only_one_of(&[("allow", true), ("deny", false)]);
        c.mutually_exclusive(&[("a", true), ("b", false), ("c", true)]);
        c.mutually_exclusive(&[("a", false), ("b", false)]);
        c.mutually_exclusive(&[("a", true), ("b", false)]);
        c.at_least_one_of(&[("second", false), ("minute", false)]);
        assert_eq!(
            problems(c),
            [
                "status_code: value should be between 100 and 599",
                ": exactly one of these fields must be non-empty: 'config.allow', 'config.deny'",
                ": exactly one of these fields must be non-empty: 'config.allow', 'config.deny'",
                ": only one or none of these fields must be set: 'config.a', 'config.b', 'config.c'",
                ": at least one of these fields must be non-empty: 'config.second', 'config.minute'",
            ]
        );
    }
}
