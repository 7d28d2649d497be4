//! Ocelot aggregates as the files describe them: the built-in aggregators and the JsonPath
//! subset RouteKeysConfig uses. Pure functions over JSON: the loader checks names and paths
//! with them, and the proxy combines parts with them.
//!
//! Built-in aggregators (named in `Aggregator`; none = the first):
//! - `SimpleJsonResponseAggregator`: `{"Key": <part body>, ...}` in RouteKeys order, Ocelot's
//!   default, except that a part that answers 404, fails or answers nothing is `null` (Ocelot
//!   pastes the empty body and writes invalid JSON); a body that is not JSON becomes a string;
//!   a key called several times (RouteKeysConfig) is an array of its answers;
//! - `JsonArrayAggregator`: `[<part body>, ...]` in RouteKeys order;
//! - `JsonMergeAggregator`: the members of every part that answers a JSON object, merged into
//!   one object (a later key wins).

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregator {
    Object,
    Array,
    Merge,
}

impl Aggregator {
    pub const NAMES: [&'static str; 3] = [
        "SimpleJsonResponseAggregator",
        "JsonArrayAggregator",
        "JsonMergeAggregator",
    ];

    pub fn from_name(name: &str) -> Option<Aggregator> {
        match name.trim() {
            n if n.eq_ignore_ascii_case("SimpleJsonResponseAggregator") => Some(Aggregator::Object),
            n if n.eq_ignore_ascii_case("JsonArrayAggregator") => Some(Aggregator::Array),
            n if n.eq_ignore_ascii_case("JsonMergeAggregator") => Some(Aggregator::Merge),
            _ => None,
        }
    }

    /// Combines each key's answers (in RouteKeys order) into the response body.
    pub fn combine(self, parts: Vec<(&str, Vec<Value>, bool)>) -> Value {
        match self {
            Aggregator::Object => Value::Object(
                parts
                    .into_iter()
                    .map(|(k, vs, many)| (k.to_string(), one(vs, many)))
                    .collect(),
            ),
            Aggregator::Array => Value::Array(
                parts
                    .into_iter()
                    .map(|(_, vs, many)| one(vs, many))
                    .collect(),
            ),
            Aggregator::Merge => {
                let mut out = serde_json::Map::new();
                for (_, vs, _) in parts {
                    for v in vs {
                        if let Value::Object(m) = v {
                            out.extend(m);
                        }
                    }
                }
                Value::Object(out)
            }
        }
    }
}

/// A key called once is its answer; a key called per JsonPath value is the array of its
/// non-empty answers.
fn one(mut vs: Vec<Value>, many: bool) -> Value {
    if many {
        Value::Array(vs.into_iter().filter(|v| !v.is_null()).collect())
    } else {
        vs.pop().unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
    Wildcard,
    /// `..name`: every `name` member at any depth.
    Descend(String),
}

/// The JsonPath subset aggregates need: `$`, `.name`, `['name']`, `[n]`, `[*]`, `.*`,
/// `..name`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    pub fn parse(p: &str) -> Result<JsonPath, String> {
        let p = p.trim();
        let rest = p.strip_prefix('$').ok_or("a JsonPath starts with `$`")?;
        let b = rest.as_bytes();
        let mut i = 0;
        let mut steps = Vec::new();
        let name_end = |from: usize| {
            rest[from..]
                .find(['.', '['])
                .map_or(rest.len(), |e| from + e)
        };
        while i < b.len() {
            match b[i] {
                b'.' if b.get(i + 1) == Some(&b'.') => {
                    let end = name_end(i + 2);
                    let name = &rest[i + 2..end];
                    if name.is_empty() {
                        return Err("`..` needs a member name".into());
                    }
                    steps.push(Step::Descend(name.to_string()));
                    i = end;
                }
                b'.' => {
                    let end = name_end(i + 1);
                    match &rest[i + 1..end] {
                        "" => return Err("`.` needs a member name".into()),
                        "*" => steps.push(Step::Wildcard),
                        name => steps.push(Step::Key(name.to_string())),
                    }
                    i = end;
                }
                b'[' => {
                    let close = rest[i..].find(']').map(|c| i + c).ok_or("unclosed `[`")?;
                    let inner = rest[i + 1..close].trim();
                    if inner == "*" {
                        steps.push(Step::Wildcard);
                    } else if let Some(q) = inner
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                    {
                        steps.push(Step::Key(q.to_string()));
                    } else {
                        steps.push(Step::Index(inner.parse().map_err(|_| {
                            format!("`[{inner}]` is not an index, `*` or a quoted name")
                        })?));
                    }
                    i = close + 1;
                }
                c => return Err(format!("unexpected `{}`", c as char)),
            }
        }
        Ok(JsonPath { steps })
    }

    pub fn select<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in cur {
                match step {
                    Step::Key(k) => next.extend(v.get(k.as_str())),
                    Step::Index(n) => {
                        if let Value::Array(a) = v {
                            let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                            next.extend(usize::try_from(idx).ok().and_then(|i| a.get(i)));
                        }
                    }
                    Step::Wildcard => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Descend(k) => descend(v, k, &mut next),
                }
            }
            cur = next;
        }
        cur
    }

    /// The distinct values the path selects, as placeholder text (strings unquoted).
    pub fn values(&self, root: &Value) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in self.select(root) {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            if !out.contains(&text) {
                out.push(text);
            }
        }
        out
    }
}

fn descend<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k == key {
                    out.push(child);
                }
                descend(child, key, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| descend(c, key, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jsonpath_table() {
        let doc = json!({"path": "/a", "comments": [{"authorId": 1}, {"authorId": 2}, {"authorId": 1}], "n": {"deep": {"authorId": 3}}});
        for (p, want) in [
            ("$.path", vec!["/a"]),
            ("$.comments[*].authorId", vec!["1", "2"]),
            ("$.comments[1].authorId", vec!["2"]),
            ("$.comments[-1].authorId", vec!["1"]),
            ("$['path']", vec!["/a"]),
            ("$..authorId", vec!["1", "2", "3"]),
            ("$.missing", vec![]),
        ] {
            assert_eq!(JsonPath::parse(p).unwrap().values(&doc), want, "{p}");
        }
        assert!(JsonPath::parse("path").is_err());
        assert!(JsonPath::parse("$.a[x]").is_err());
        assert_eq!(
            JsonPath::parse("$[*].writerId")
                .unwrap()
                .values(&json!([{"writerId": "w"}])),
            vec!["w"]
        );
    }

    #[test]
    fn aggregation_shapes() {
        let parts = vec![
            ("Tom", vec![json!({"Age": 19})], false),
            ("Laura", vec![Value::Null], false),
            ("C", vec![json!(1), Value::Null, json!(2)], true),
        ];
        let v = Aggregator::Object.combine(parts);
        assert_eq!(
            v.to_string(),
            r#"{"Tom":{"Age":19},"Laura":null,"C":[1,2]}"#
        );
        assert_eq!(
            Aggregator::Merge.combine(vec![
                ("a", vec![json!({"x": 1})], false),
                ("b", vec![json!({"y": 2})], false)
            ]),
            json!({"x": 1, "y": 2})
        );
        assert_eq!(
            Aggregator::from_name("jsonarrayaggregator"),
            Some(Aggregator::Array)
        );
        assert_eq!(Aggregator::from_name("UsersPostsAggregator"), None);
    }
}
