//! A spanned document tree shared by both dialects: YAML (Kong) and JSON with comments
//! (Ocelot, read the way .NET's configuration stack reads it) parse into the same `Node`,
//! which keeps every value's line and column. Scalars keep their source text and whether they
//! were quoted, so the typed layer decides what `80`, `"80"` or `yes` mean for each field.

use std::collections::HashMap;

use compact_str::CompactString;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    /// Inline up to 24 bytes: most keys and values are short, and a heap string per scalar
    /// was most of a large file's tree (10,000 Kong routes: 7 MB of 13).
    pub text: CompactString,
    /// Unquoted: YAML plain scalars and JSON numbers, booleans and null.
    pub plain: bool,
}

impl Scalar {
    pub fn is_null(&self) -> bool {
        self.plain && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Keys in document order (duplicates are reported when parsing).
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

impl Node {
    pub fn null(span: Span) -> Node {
        Node {
            span,
            value: Value::Scalar(Scalar {
                text: "null".into(),
                plain: true,
            }),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if s.is_null())
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) if !s.is_null() => Some(&s.text),
            _ => None,
        }
    }

    pub fn get(&self, key: &str, case_insensitive: bool) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| {
                    k.as_str().is_some_and(|k| {
                        if case_insensitive {
                            k.eq_ignore_ascii_case(key)
                        } else {
                            k == key
                        }
                    })
                })
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn index(&self, i: usize) -> Option<&Node> {
        match &self.value {
            Value::Seq(items) => items.get(i),
            _ => None,
        }
    }

    /// The tree of a JSON value, every node at `span`.
    pub fn from_json(value: &serde_json::Value, span: Span) -> Node {
        let scalar = |text: String, plain: bool| {
            Value::Scalar(Scalar {
                text: text.into(),
                plain,
            })
        };
        let value = match value {
            serde_json::Value::Null => scalar("null".into(), true),
            serde_json::Value::Bool(b) => scalar(b.to_string(), true),
            serde_json::Value::Number(n) => scalar(n.to_string(), true),
            serde_json::Value::String(s) => scalar(s.clone(), false),
            serde_json::Value::Array(items) => {
                Value::Seq(items.iter().map(|v| Node::from_json(v, span)).collect())
            }
            serde_json::Value::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            Node {
                                span,
                                value: scalar(k.clone(), false),
                            },
                            Node::from_json(v, span),
                        )
                    })
                    .collect(),
            ),
        };
        Node { span, value }
    }

    /// Plain JSON, for `switchyard config` and for plugin configs that are only stored.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Scalar(s) if s.is_null() => serde_json::Value::Null,
            Value::Scalar(s) if s.plain => match s.text.as_str() {
                "true" | "True" | "TRUE" => serde_json::Value::Bool(true),
                "false" | "False" | "FALSE" => serde_json::Value::Bool(false),
                t => t
                    .parse::<i64>()
                    .map(serde_json::Value::from)
                    .or_else(|_| t.parse::<f64>().map(serde_json::Value::from))
                    .unwrap_or_else(|_| serde_json::Value::String(t.to_string())),
            },
            Value::Scalar(s) => serde_json::Value::String(s.text.to_string()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

// === YAML ===

/// Parses one YAML document into a spanned tree: block-style files through the fast path
/// (`yaml_block`), anything else through the full parser.
pub fn parse_yaml(text: &str) -> Result<Node, SyntaxError> {
    let root = match super::yaml_block::parse(text) {
        Some(root) => root,
        None => parse_yaml_full(text)?,
    };
    check_duplicate_keys(&root, false)?;
    Ok(root)
}

/// The full YAML parser. Anchors and aliases are resolved (merge keys `<<` included); an alias
/// is bounded so that a "billion laughs" document cannot blow up. Duplicate keys are left to
/// the caller.
pub fn parse_yaml_full(text: &str) -> Result<Node, SyntaxError> {
    use saphyr_parser::{Event, Parser, ScalarStyle};

    enum Frame {
        Seq(Span, usize, Vec<Node>),
        Map(Span, usize, Vec<(Node, Node)>, Option<Node>),
    }
    const MAX_NODES_FROM_ALIASES: usize = 100_000;

    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut alias_budget = MAX_NODES_FROM_ALIASES;

    fn count(n: &Node) -> usize {
        match &n.value {
            Value::Scalar(_) => 1,
            Value::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
            Value::Map(e) => 1 + e.iter().map(|(k, v)| count(k) + count(v)).sum::<usize>(),
        }
    }

    let finish =
        |node: Node, stack: &mut Vec<Frame>, root: &mut Option<Node>| match stack.last_mut() {
            None => {
                if root.is_none() {
                    *root = Some(node);
                }
            }
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    if key.as_str() == Some("<<") {
                        // Merge key: the aliased mappings' entries come in unless already set.
                        let sources = match node.value {
                            Value::Map(_) => vec![node],
                            Value::Seq(items) => items,
                            Value::Scalar(_) => vec![],
                        };
                        for src in sources {
                            if let Value::Map(src_entries) = src.value {
                                for (k, v) in src_entries {
                                    if !entries.iter().any(|(ek, _)| ek.as_str() == k.as_str()) {
                                        entries.push((k, v));
                                    }
                                }
                            }
                        }
                    } else {
                        entries.push((key, node));
                    }
                }
            },
        };

    let mut docs = 0;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| SyntaxError {
            span: Span {
                line: e.marker().line() as u32,
                col: e.marker().col() as u32 + 1,
            },
            message: e.info().to_string(),
        })?;
        let at = Span {
            line: span.start.line() as u32,
            col: span.start.col() as u32 + 1,
        };
        match event {
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    return Err(SyntaxError {
                        span: at,
                        message: "more than one YAML document in the file; keep one per file"
                            .into(),
                    });
                }
            }
            Event::Scalar(value, style, anchor, _tag) => {
                let node = Node {
                    span: at,
                    value: Value::Scalar(Scalar {
                        text: CompactString::new(&value),
                        plain: style == ScalarStyle::Plain,
                    }),
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                finish(node, &mut stack, &mut root);
            }
            Event::Alias(id) => {
                let node = anchors.get(&id).cloned().ok_or_else(|| SyntaxError {
                    span: at,
                    message: "alias to an unknown anchor".into(),
                })?;
                let n = count(&node);
                if n > alias_budget {
                    return Err(SyntaxError {
                        span: at,
                        message: "aliases expand to too many nodes (limit 100000)".into(),
                    });
                }
                alias_budget -= n;
                finish(Node { span: at, ..node }, &mut stack, &mut root);
            }
            Event::SequenceStart(anchor, _) => stack.push(Frame::Seq(at, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => stack.push(Frame::Map(at, anchor, Vec::new(), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match stack.pop() {
                    Some(Frame::Seq(span, anchor, items)) => (
                        Node {
                            span,
                            value: Value::Seq(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Map(span, anchor, entries, _)) => (
                        Node {
                            span,
                            value: Value::Map(entries),
                        },
                        anchor,
                    ),
                    None => continue,
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                finish(node, &mut stack, &mut root);
            }
            _ => {}
        }
    }
    Ok(root.unwrap_or_else(|| Node::null(Span { line: 1, col: 1 })))
}

fn check_duplicate_keys(node: &Node, case_insensitive: bool) -> Result<(), SyntaxError> {
    match &node.value {
        Value::Scalar(_) => Ok(()),
        Value::Seq(items) => items
            .iter()
            .try_for_each(|n| check_duplicate_keys(n, case_insensitive)),
        Value::Map(entries) => {
            for (i, (k, v)) in entries.iter().enumerate() {
                if let Some(name) = k.as_str() {
                    let dup = entries[..i].iter().any(|(pk, _)| {
                        pk.as_str().is_some_and(|p| {
                            if case_insensitive {
                                p.eq_ignore_ascii_case(name)
                            } else {
                                p == name
                            }
                        })
                    });
                    if dup {
                        return Err(SyntaxError {
                            span: k.span,
                            message: format!("duplicate key `{name}` in one mapping"),
                        });
                    }
                }
                check_duplicate_keys(v, case_insensitive)?;
            }
            Ok(())
        }
    }
}

// === JSON with comments ===

/// Parses JSON the way .NET's configuration reader accepts it: `//` and `/* */` comments,
/// trailing commas, a byte-order mark. Keys that differ only in case are duplicates, because
/// .NET configuration keys are case-insensitive.
pub fn parse_jsonc(text: &str) -> Result<Node, SyntaxError> {
    let mut p = JsonParser {
        src: text.strip_prefix('\u{feff}').unwrap_or(text).as_bytes(),
        pos: 0,
        line: 1,
        line_start: 0,
        depth: 0,
    };
    p.skip_ws()?;
    let node = p.value()?;
    p.skip_ws()?;
    if p.pos < p.src.len() {
        return Err(p.err("unexpected text after the end of the JSON document"));
    }
    check_duplicate_keys(&node, true)?;
    Ok(node)
}

struct JsonParser<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
    line_start: usize,
    depth: usize,
}

impl JsonParser<'_> {
    fn span(&self) -> Span {
        // Columns count characters, not bytes, so that non-ASCII comments do not shift them.
        let col = String::from_utf8_lossy(&self.src[self.line_start..self.pos])
            .chars()
            .count();
        Span {
            line: self.line,
            col: col as u32 + 1,
        }
    }

    fn err(&self, msg: impl Into<String>) -> SyntaxError {
        SyntaxError {
            span: self.span(),
            message: msg.into(),
        }
    }

    fn bump(&mut self) -> Option<u8> {
        let c = *self.src.get(self.pos)?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
            self.line_start = self.pos;
        }
        Some(c)
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_ws(&mut self) -> Result<(), SyntaxError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => {
                    self.bump();
                }
                Some(b'/') if self.src.get(self.pos + 1) == Some(&b'/') => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                Some(b'/') if self.src.get(self.pos + 1) == Some(&b'*') => {
                    let start = self.err("unterminated /* comment");
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(start),
                            Some(b'*') if self.peek() == Some(b'/') => {
                                self.bump();
                                break;
                            }
                            _ => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        let span = self.span();
        match self.peek() {
            None => Err(self.err("unexpected end of file: a value is missing")),
            Some(b'{') => self.nested(|p| p.object(span)),
            Some(b'[') => self.nested(|p| p.array(span)),
            Some(b'"') => Ok(Node {
                span,
                value: Value::Scalar(Scalar {
                    text: CompactString::new(self.string()?),
                    plain: false,
                }),
            }),
            Some(c) if c == b'-' || c.is_ascii_alphanumeric() || c == b'.' => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') {
                        self.bump();
                    } else {
                        break;
                    }
                }
                let text = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or_default();
                let ok = matches!(text, "true" | "false" | "null") || text.parse::<f64>().is_ok();
                if !ok {
                    self.pos = start;
                    return Err(SyntaxError {
                        span,
                        message: format!(
                            "`{text}` is not a JSON value (strings need double quotes)"
                        ),
                    });
                }
                Ok(Node {
                    span,
                    value: Value::Scalar(Scalar {
                        text: CompactString::new(text),
                        plain: true,
                    }),
                })
            }
            Some(c) => Err(self.err(format!("unexpected character `{}`", c as char))),
        }
    }

    fn nested(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Node, SyntaxError>,
    ) -> Result<Node, SyntaxError> {
        self.depth += 1;
        if self.depth > 128 {
            return Err(self.err("nesting deeper than 128 levels"));
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn object(&mut self, span: Span) -> Result<Node, SyntaxError> {
        self.bump();
        let mut entries = Vec::new();
        loop {
            self.skip_ws()?;
            match self.peek() {
                Some(b'}') => {
                    self.bump();
                    return Ok(Node {
                        span,
                        value: Value::Map(entries),
                    });
                }
                Some(b'"') => {}
                None => {
                    return Err(self.err("unexpected end of file inside an object: `}` is missing"));
                }
                Some(c) => {
                    return Err(self.err(format!(
                        "expected a quoted key or `}}`, found `{}`",
                        c as char
                    )));
                }
            }
            let kspan = self.span();
            let key = self.string()?;
            self.skip_ws()?;
            if self.peek() != Some(b':') {
                return Err(self.err(format!("expected `:` after the key \"{key}\"")));
            }
            self.bump();
            self.skip_ws()?;
            let value = self.value()?;
            entries.push((
                Node {
                    span: kspan,
                    value: Value::Scalar(Scalar {
                        text: CompactString::new(key),
                        plain: false,
                    }),
                },
                value,
            ));
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b'}') => {}
                None => {
                    return Err(self.err("unexpected end of file inside an object: `}` is missing"));
                }
                Some(c) => {
                    return Err(self.err(format!("expected `,` or `}}`, found `{}`", c as char)));
                }
            }
        }
    }

    fn array(&mut self, span: Span) -> Result<Node, SyntaxError> {
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip_ws()?;
            if self.peek() == Some(b']') {
                self.bump();
                return Ok(Node {
                    span,
                    value: Value::Seq(items),
                });
            }
            items.push(self.value()?);
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b']') => {}
                None => {
                    return Err(self.err("unexpected end of file inside an array: `]` is missing"));
                }
                Some(c) => {
                    return Err(self.err(format!("expected `,` or `]`, found `{}`", c as char)));
                }
            }
        }
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let start = self.err("unterminated string");
        self.bump();
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None | Some(b'\n') => return Err(start),
                Some(b'"') => break,
                Some(b'\\') => match self.bump() {
                    Some(b'"') => out.push(b'"'),
                    Some(b'\\') => out.push(b'\\'),
                    Some(b'/') => out.push(b'/'),
                    Some(b'b') => out.push(8),
                    Some(b'f') => out.push(12),
                    Some(b'n') => out.push(b'\n'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b't') => out.push(b'\t'),
                    Some(b'u') => {
                        let mut cp = self.hex4()?;
                        if (0xD800..0xDC00).contains(&cp) && self.peek() == Some(b'\\') {
                            self.bump();
                            self.bump();
                            let lo = self.hex4()?;
                            cp =
                                0x10000 + ((cp - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
                        }
                        let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                        out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    _ => return Err(self.err("invalid escape sequence in a string")),
                },
                Some(c) => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not valid UTF-8"))
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut v = 0;
        for _ in 0..4 {
            let d = self
                .bump()
                .and_then(|c| (c as char).to_digit(16))
                .ok_or_else(|| self.err("invalid \\u escape"))?;
            v = v * 16 + d;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonc_accepts_comments_and_trailing_commas() {
        let n =
            parse_jsonc("{\n // a comment\n \"A\": [1, 2,], /* b */ \"B\": \"x\"//,\n,}").unwrap();
        assert_eq!(
            n.get("a", true).unwrap().index(1).unwrap().as_str(),
            Some("2")
        );
        assert_eq!(n.get("B", false).unwrap().span, Span { line: 3, col: 29 });
    }

    #[test]
    fn jsonc_reports_position_of_errors() {
        let e = parse_jsonc("{\"Routes\": [{\"A\": \"x\",, }]}").unwrap_err();
        assert_eq!(e.span, Span { line: 1, col: 23 });
        let e = parse_jsonc("{\"a\": 1, \"A\": 2}").unwrap_err();
        assert!(e.message.contains("duplicate key"), "{}", e.message);
    }

    #[test]
    fn yaml_keeps_positions_and_quoting() {
        let n = parse_yaml("a:\n  - x: 1\n    y: '2'\n").unwrap();
        let item = n.get("a", false).unwrap().index(0).unwrap();
        assert_eq!(item.get("y", false).unwrap().span, Span { line: 3, col: 8 });
        assert!(matches!(&item.get("x", false).unwrap().value, Value::Scalar(s) if s.plain));
        assert!(matches!(&item.get("y", false).unwrap().value, Value::Scalar(s) if !s.plain));
    }

    #[test]
    fn yaml_resolves_anchors_and_merge_keys() {
        let n = parse_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n").unwrap();
        let o = n.get("other", false).unwrap();
        assert_eq!(o.get("x", false).unwrap().as_str(), Some("1"));
        assert_eq!(o.get("y", false).unwrap().as_str(), Some("2"));
    }

    #[test]
    fn yaml_rejects_duplicate_keys() {
        assert!(parse_yaml("a: 1\na: 2\n").is_err());
    }
}
