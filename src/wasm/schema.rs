//! A filter's `config_schema` (from `<name>.meta.json`, Kong 3.5+), checked against a JSON
//! config at load. The Draft 4 keywords filter schemas use: `type`, `properties`,
//! `required`, `additionalProperties` (a boolean or a schema), `items`, `enum`, `minimum`,
//! `maximum`, `minLength`, `maxLength`, `minItems`, `maxItems`. Others are not checked.

use serde_json::Value;

/// Every problem of `value` under `schema`, as `path: message` (`$` is the config itself).
pub fn check(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, value, "$", &mut out);
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    let actual = type_name(v);
    actual == t || (t == "number" && actual == "integer")
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let Some(s) = schema.as_object() else { return };
    let allowed: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !allowed.is_empty() && !allowed.iter().any(|t| is_type(value, t)) {
        out.push(format!(
            "{path}: expected {}, got {}",
            allowed.join(" or "),
            type_name(value)
        ));
        return;
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(value)
    {
        out.push(format!(
            "{path}: must be one of {}",
            Value::Array(options.clone())
        ));
    }
    bounds(s, value, path, out);
    match value {
        Value::Object(map) => object(s, map, path, out),
        Value::Array(items) => {
            if let Some(item) = s.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(item, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// minimum, maximum, minLength, maxLength, minItems, maxItems.
fn bounds(s: &serde_json::Map<String, Value>, value: &Value, path: &str, out: &mut Vec<String>) {
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    if let Some(n) = value.as_f64() {
        if let Some(min) = num("minimum").filter(|m| n < *m) {
            out.push(format!("{path}: must be at least {min}"));
        }
        if let Some(max) = num("maximum").filter(|m| n > *m) {
            out.push(format!("{path}: must be at most {max}"));
        }
    }
    let len = match value {
        Value::String(t) => Some((t.chars().count(), "Length")),
        Value::Array(a) => Some((a.len(), "Items")),
        _ => None,
    };
    if let Some((len, what)) = len {
        let len = len as f64;
        if let Some(min) = num(&format!("min{what}")).filter(|m| len < *m) {
            out.push(format!("{path}: must have at least {min} {}", unit(what)));
        }
        if let Some(max) = num(&format!("max{what}")).filter(|m| len > *m) {
            out.push(format!("{path}: must have at most {max} {}", unit(what)));
        }
    }
}

fn unit(what: &str) -> &'static str {
    if what == "Length" {
        "characters"
    } else {
        "items"
    }
}

fn object(
    s: &serde_json::Map<String, Value>,
    map: &serde_json::Map<String, Value>,
    path: &str,
    out: &mut Vec<String>,
) {
    let props = s.get("properties").and_then(Value::as_object);
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = r.as_str()
            && !map.contains_key(r)
        {
            out.push(format!("{path}.{r}: required field missing"));
        }
    }
    for (k, v) in map {
        let sub = format!("{path}.{k}");
        match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
            (Some(p), _) => walk(p, v, &sub, out),
            (None, Some(Value::Bool(false))) => out.push(format!("{sub}: unknown field")),
            (None, Some(extra @ Value::Object(_))) => walk(extra, v, &sub, out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn reports_each_problem_with_its_path() {
        let schema = json!({
            "type": "object",
            "properties": {
                "minute": {"type": "integer", "minimum": 1},
                "policy": {"type": "string", "enum": ["local", "redis"]},
                "keys": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
            },
            "required": ["minute"],
            "additionalProperties": false
        });
        assert!(super::check(&schema, &json!({"minute": 3, "policy": "local"})).is_empty());
        let got = super::check(
            &schema,
            &json!({"minute": 0, "policy": "x", "keys": ["a", 1, "c"], "extra": true}),
        );
        assert_eq!(
            got,
            vec![
                "$.minute: must be at least 1",
                "$.policy: must be one of [\"local\",\"redis\"]",
                "$.keys: must have at most 2 items",
                "$.keys[1]: expected string, got integer",
                "$.extra: unknown field",
            ]
        );
        assert_eq!(
            super::check(&schema, &json!({})),
            vec!["$.minute: required field missing"]
        );
        assert_eq!(
            super::check(&schema, &json!("text")),
            vec!["$: expected object, got string"]
        );
    }
}
