//! serde over the spanned tree: raw config types derive `Deserialize` and mirror the files;
//! this deserializer gives them what the dialects need and serde alone does not:
//! - every error carries the line, column and entity path of the value that caused it;
//! - unknown keys are collected (an error for Kong, a warning with "did you mean" for Ocelot)
//!   instead of stopping at the first one;
//! - Ocelot keys match case-insensitively, and numbers or booleans written as strings convert,
//!   as .NET's configuration binder does;
//! - `Entities<T>` keeps deserialising the other entities of a list after one fails, so one
//!   load reports every broken entity at once.
//!
//! A 10,000-route file is walked once, without copies: entity lists are deserialised in place
//! from the tree, and paths are a chain of borrowed segments on the stack (`At`), made into a
//! `Path` only for a problem or a `Captured` value.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::diag::{Path, Seg, nearest};
use super::node::{Node, Scalar, Span, Value};

/// A deserialisation problem at a known place.
#[derive(Debug, Clone)]
pub struct DeError {
    pub span: Option<Span>,
    pub path: Path,
    pub message: String,
    pub warning: bool,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            span: None,
            path: Path::root(),
            message: msg.to_string(),
            warning: false,
        }
    }
}

impl DeError {
    /// Errors made by serde's generated code know no place; the node that saw them fail does.
    fn at(mut self, node: &Node, path: At<'_>) -> Self {
        if self.span.is_none() {
            self.span = Some(node.span);
            self.path = path.to_path();
        }
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Exact keys; unknown keys are errors; keys starting with `_` are metadata (`_comment`,
    /// `_ignore`, decK's `_info`, `_konnect`, ...) and skipped.
    Kong,
    /// Case-insensitive keys; unknown keys are warnings; scalars convert leniently.
    Ocelot,
}

/// Collects what does not stop deserialisation: unknown keys and failed list entities.
type Sink = RefCell<Vec<DeError>>;

/// Where the value being deserialised sits: a chain of borrowed segments, free to extend
/// while walking the tree.
#[derive(Clone, Copy)]
enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    fn to_path(self) -> Path {
        let mut segs = Vec::new();
        let mut at = self;
        loop {
            match at {
                At::Root => break,
                At::Key(parent, k) => {
                    segs.push(Seg::Key(k.to_string().into()));
                    at = *parent;
                }
                At::Index(parent, i) => {
                    segs.push(Seg::Index(i));
                    at = *parent;
                }
            }
        }
        segs.reverse();
        Path(segs)
    }
}

/// Deserialises `T` from a node. The returned problems hold both errors and warnings; the
/// value is `None` only when the node itself could not become a `T`.
pub fn from_node<T: de::DeserializeOwned>(
    node: &Node,
    dialect: Dialect,
) -> (Option<T>, Vec<DeError>) {
    let sink = Sink::default();
    let result = T::deserialize(NodeDe {
        node,
        path: &At::Root,
        dialect,
        sink: &sink,
    });
    let mut problems = sink.into_inner();
    match result {
        Ok(v) => (Some(v), problems),
        Err(e) => {
            problems.push(e.at(node, At::Root));
            (None, problems)
        }
    }
}

// === Captured sub-trees ===

const CAPTURE: &str = "$switchyard::Captured";

thread_local! {
    static CAPTURED: RefCell<Option<(Node, Path)>> = const { RefCell::new(None) };
}

/// A sub-tree kept as it is written (with its path), for values whose shape depends on
/// something else, like a plugin's `config`, which is checked against that plugin's schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Captured {
    pub node: Node,
    pub path: Path,
}

impl<'de> de::Deserialize<'de> for Captured {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Captured;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Captured, E> {
                CAPTURED
                    .with(|c| c.borrow_mut().take())
                    .map(|(node, path)| Captured { node, path })
                    .ok_or_else(|| E::custom("a captured value needs the config deserializer"))
            }
        }
        d.deserialize_newtype_struct(CAPTURE, V)
    }
}

impl Captured {
    /// Reads this sub-tree as `T`; problems' paths are relative to it.
    pub fn deserialize<T: de::DeserializeOwned>(
        &self,
        dialect: Dialect,
    ) -> (Option<T>, Vec<DeError>) {
        from_node(&self.node, dialect)
    }

    /// Where the deepest node along `path` (relative to this sub-tree) was written.
    pub fn span_at(&self, path: &Path) -> Span {
        let mut node = &self.node;
        for seg in &path.0 {
            let next = match seg {
                Seg::Key(k) => node.get(k, false),
                Seg::Index(i) => node.index(*i),
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.span
    }

    /// Settings compiled elsewhere (as JSON) in the shape plugin configs are read from;
    /// positions are those of `at`, where the settings were written.
    pub fn from_json(value: &serde_json::Value, at: Span, path: Path) -> Captured {
        Captured {
            node: Node::from_json(value, at),
            path,
        }
    }
}

impl serde::Serialize for Captured {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.node.to_json().serialize(s)
    }
}

/// A list of entities where a broken entry is reported and left as `None`, so that the other
/// entries still load and their own problems are found in the same pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Entities<T>(pub Vec<Option<T>>);

impl<T> Default for Entities<T> {
    fn default() -> Self {
        Entities(Vec::new())
    }
}

impl<T> Entities<T> {
    /// Entries that loaded, with their index in the file.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (i, t)))
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const ENTITIES: &str = "$switchyard::Entities";

thread_local! {
    /// Set by the entity-list access when it has reported an entry's error to the sink and
    /// skipped it: the `Err` it returns then means "leave a hole", not "fail the list".
    static SKIPPED: Cell<bool> = const { Cell::new(false) };
}

impl<'de, T: de::DeserializeOwned> de::Deserialize<'de> for Entities<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: de::DeserializeOwned> Visitor<'de> for V<T> {
            type Value = Entities<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of entities (through the config deserializer)")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Entities<T>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                loop {
                    match seq.next_element::<T>() {
                        Ok(Some(t)) => out.push(Some(t)),
                        Ok(None) => return Ok(Entities(out)),
                        Err(_) if SKIPPED.replace(false) => out.push(None),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        d.deserialize_newtype_struct(ENTITIES, V(PhantomData))
    }
}

impl<T: serde::Serialize> serde::Serialize for Entities<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().flatten())
    }
}

// === The deserializer ===

#[derive(Clone, Copy)]
struct NodeDe<'a> {
    node: &'a Node,
    path: &'a At<'a>,
    dialect: Dialect,
    sink: &'a Sink,
}

impl<'a> NodeDe<'a> {
    fn err(&self, msg: impl Into<String>) -> DeError {
        DeError {
            span: Some(self.node.span),
            path: self.path.to_path(),
            message: msg.into(),
            warning: false,
        }
    }

    fn scalar(&self) -> Option<&'a Scalar> {
        match &self.node.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        kind(self.node)
    }

    fn lenient(&self, s: &Scalar) -> bool {
        s.plain || self.dialect == Dialect::Ocelot
    }

    fn int<T: TryFrom<i128>>(&self, what: &str) -> Result<T, DeError> {
        let s = self
            .scalar()
            .filter(|s| !s.is_null())
            .ok_or_else(|| self.err(format!("expected {what}, found {}", self.kind())))?;
        let t = s.text.trim();
        let v: Option<i128> = if self.lenient(s) {
            t.parse::<i128>().ok().or_else(|| {
                // Generated files write large integers in exponent form (`1.2096e+06`).
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e30)
                    .map(|f| f as i128)
            })
        } else {
            None
        };
        match v {
            Some(v) => {
                T::try_from(v).map_err(|_| self.err(format!("{t} is out of range for {what}")))
            }
            None => Err(self.err(format!("expected {what}, found `{}`", s.text))),
        }
    }
}

fn kind(node: &Node) -> &'static str {
    match &node.value {
        Value::Scalar(s) if s.is_null() => "null",
        Value::Scalar(_) => "a scalar",
        Value::Seq(_) => "a list",
        Value::Map(_) => "a mapping",
    }
}

/// A child value with its path segment, for the derived deserializers to ask for.
struct Child<'a> {
    node: &'a Node,
    path: At<'a>,
    dialect: Dialect,
    sink: &'a Sink,
}

impl<'a> Child<'a> {
    fn de<'b>(&'b self) -> NodeDe<'b>
    where
        'a: 'b,
    {
        NodeDe {
            node: self.node,
            path: &self.path,
            dialect: self.dialect,
            sink: self.sink,
        }
    }
}

macro_rules! int_method {
    ($name:ident, $visit:ident, $t:ty, $what:expr) => {
        fn $name<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            let n: $t = self.int($what)?;
            v.$visit(n)
                .map_err(|e: DeError| e.at(self.node, *self.path))
        }
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Scalar(s) if s.is_null() => v.visit_unit(),
            Value::Scalar(s) if s.plain => match s.text.as_str() {
                "true" | "True" | "TRUE" => v.visit_bool(true),
                "false" | "False" | "FALSE" => v.visit_bool(false),
                t => {
                    if let Ok(i) = t.parse::<i64>() {
                        v.visit_i64(i)
                    } else if let Ok(f) = t.parse::<f64>() {
                        v.visit_f64(f)
                    } else {
                        v.visit_str(t)
                    }
                }
            },
            Value::Scalar(s) => v.visit_str(&s.text),
            Value::Seq(_) => return self.deserialize_seq(v),
            Value::Map(_) => return self.deserialize_map(v),
        };
        r.map_err(|e: DeError| e.at(self.node, *self.path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let b = match self.scalar() {
            Some(s) if self.lenient(s) && s.text.eq_ignore_ascii_case("true") => true,
            Some(s) if self.lenient(s) && s.text.eq_ignore_ascii_case("false") => false,
            Some(s) if !s.is_null() => {
                return Err(self.err(format!("expected true or false, found `{}`", s.text)));
            }
            _ => return Err(self.err(format!("expected true or false, found {}", self.kind()))),
        };
        v.visit_bool(b)
            .map_err(|e: DeError| e.at(self.node, *self.path))
    }

    int_method!(deserialize_i8, visit_i8, i8, "an integer");
    int_method!(deserialize_i16, visit_i16, i16, "an integer");
    int_method!(deserialize_i32, visit_i32, i32, "an integer");
    int_method!(deserialize_i64, visit_i64, i64, "an integer");
    int_method!(deserialize_u8, visit_u8, u8, "a non-negative integer");
    int_method!(deserialize_u16, visit_u16, u16, "a non-negative integer");
    int_method!(deserialize_u32, visit_u32, u32, "a non-negative integer");
    int_method!(deserialize_u64, visit_u64, u64, "a non-negative integer");

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) if !s.is_null() && self.lenient(s) => match s.text.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => v
                    .visit_f64(f)
                    .map_err(|e: DeError| e.at(self.node, *self.path)),
                _ => Err(self.err(format!("expected a number, found `{}`", s.text))),
            },
            Some(s) if !s.is_null() => Err(self.err(format!(
                "expected a number, found the string \"{}\"",
                s.text
            ))),
            _ => Err(self.err(format!("expected a number, found {}", self.kind()))),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) if !s.is_null() => v
                .visit_str(&s.text)
                .map_err(|e: DeError| e.at(self.node, *self.path)),
            _ => Err(self.err(format!("expected a string, found {}", self.kind()))),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            v.visit_none()
                .map_err(|e: DeError| e.at(self.node, *self.path))
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
            .map_err(|e: DeError| e.at(self.node, *self.path))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        match name {
            CAPTURE => {
                CAPTURED.with(|c| *c.borrow_mut() = Some((self.node.clone(), self.path.to_path())));
                v.visit_unit()
            }
            // Left without a place for the enclosing mapping to give it its own: a list of the
            // wrong kind is reported at the entity that holds it.
            ENTITIES => match &self.node.value {
                Value::Seq(items) => v.visit_seq(Seq::new(items, self, true)),
                _ if self.node.is_null() => v.visit_seq(Seq::new(&[], self, true)),
                _ => Err(de::Error::custom(format!(
                    "expected a list, found {}",
                    self.kind()
                ))),
            },
            _ => v.visit_newtype_struct(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => v
                .visit_seq(Seq::new(items, self, false))
                .map_err(|e: DeError| e.at(self.node, *self.path)),
            // An Ocelot single value where a list is expected is the list of that value,
            // as `"UpstreamHttpMethod": "Get"` binds in .NET.
            Value::Scalar(s) if self.dialect == Dialect::Ocelot && !s.is_null() => {
                v.visit_seq(Seq::new(std::slice::from_ref(self.node), self, false))
            }
            _ => Err(self.err(format!("expected a list, found {}", self.kind()))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => v
                .visit_map(Map {
                    entries: entries.iter(),
                    fields: None,
                    pending: None,
                    parent: self,
                })
                .map_err(|e: DeError| e.at(self.node, *self.path)),
            _ => Err(self.err(format!("expected a mapping, found {}", self.kind()))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => v
                .visit_map(Map {
                    entries: entries.iter(),
                    fields: Some((name, fields)),
                    pending: None,
                    parent: self,
                })
                .map_err(|e: DeError| e.at(self.node, *self.path)),
            _ => Err(self.err(format!("expected a mapping, found {}", self.kind()))),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) if !s.is_null() => {
                let name = if self.dialect == Dialect::Ocelot {
                    variants
                        .iter()
                        .find(|x| x.eq_ignore_ascii_case(&s.text))
                        .copied()
                        .unwrap_or(&s.text)
                } else {
                    &s.text
                };
                let r: Result<V::Value, DeError> = v.visit_enum(name.into_deserializer());
                r.map_err(|_| {
                    self.err(format!(
                        "`{}` is not one of: {}",
                        s.text,
                        variants.join(", ")
                    ))
                })
            }
            _ => Err(self.err(format!(
                "expected one of {}, found {}",
                variants.join(", "),
                self.kind()
            ))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

/// The items of a sequence. In an `Entities<T>` (`skip_failures`), an entry that fails is
/// reported with its position and skipped (see `SKIPPED`), and the next one is read.
struct Seq<'a> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    parent: NodeDe<'a>,
    skip_failures: bool,
}

impl<'a> Seq<'a> {
    fn new(items: &'a [Node], parent: NodeDe<'a>, skip_failures: bool) -> Self {
        Seq {
            items: items.iter(),
            index: 0,
            parent,
            skip_failures,
        }
    }
}

impl<'de, 'a> de::SeqAccess<'de> for Seq<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let child = Child {
            node,
            path: At::Index(self.parent.path, self.index),
            dialect: self.parent.dialect,
            sink: self.parent.sink,
        };
        self.index += 1;
        let value = seed.deserialize(child.de()).map(Some);
        if !self.skip_failures {
            return value;
        }
        value.map_err(|e| {
            self.parent.sink.borrow_mut().push(e.at(node, child.path));
            SKIPPED.set(true);
            de::Error::custom("skipped")
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a, I> {
    entries: I,
    fields: Option<(&'static str, &'static [&'static str])>,
    pending: Option<(&'a Node, &'a str)>,
    parent: NodeDe<'a>,
}

impl<'de, 'a, I: Iterator<Item = &'a (Node, Node)>> de::MapAccess<'de> for Map<'a, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        loop {
            let Some((k, v)) = self.entries.next() else {
                return Ok(None);
            };
            let key = k.as_str().unwrap_or_default();
            let Some((_, fields)) = self.fields else {
                self.pending = Some((v, key));
                let kd = Child {
                    node: k,
                    path: At::Key(self.parent.path, key),
                    dialect: self.parent.dialect,
                    sink: self.parent.sink,
                };
                return seed.deserialize(kd.de()).map(Some);
            };
            let canonical = match self.parent.dialect {
                Dialect::Kong => fields.iter().find(|f| **f == key),
                Dialect::Ocelot => fields.iter().find(|f| f.eq_ignore_ascii_case(key)),
            };
            match canonical {
                // Kong writes `null` for "not set" (decK dumps spell every unset field so):
                // the field is left to its default.
                Some(_) if self.parent.dialect == Dialect::Kong && v.is_null() => continue,
                Some(name) => {
                    self.pending = Some((v, name));
                    return seed
                        .deserialize(IntoDeserializer::<DeError>::into_deserializer(*name))
                        .map(Some);
                }
                None if self.parent.dialect == Dialect::Kong && key.starts_with('_') => continue,
                None => {
                    let path = At::Key(self.parent.path, key).to_path();
                    let hint = match nearest(key, fields.iter().copied()) {
                        Some(n) => format!("; did you mean `{n}`?"),
                        None => String::new(),
                    };
                    let (message, warning) = match self.parent.dialect {
                        Dialect::Kong => (format!("unknown field `{key}`{hint}"), false),
                        Dialect::Ocelot => (format!("unknown key `{key}` is ignored{hint}"), true),
                    };
                    self.parent.sink.borrow_mut().push(DeError {
                        span: Some(k.span),
                        path,
                        message,
                        warning,
                    });
                }
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let (node, key) = self.pending.take().expect("value after key");
        let child = Child {
            node,
            path: At::Key(self.parent.path, key),
            dialect: self.parent.dialect,
            sink: self.parent.sink,
        };
        seed.deserialize(child.de())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::{parse_jsonc, parse_yaml};
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Route {
        #[serde(rename = "UpstreamPathTemplate")]
        upstream: String,
        #[serde(rename = "Port", default)]
        port: u16,
    }

    #[derive(Deserialize, Debug)]
    struct File {
        #[serde(rename = "Routes", default)]
        routes: Entities<Route>,
    }

    #[test]
    fn ocelot_keys_are_case_insensitive_and_strings_convert() {
        let n =
            parse_jsonc(r#"{"routes": [{"upstreamPathTemplate": "/a", "port": "80", "Typo": 1}]}"#)
                .unwrap();
        let (f, problems) = from_node::<File>(&n, Dialect::Ocelot);
        let f = f.unwrap();
        let (_, r) = f.routes.iter().next().unwrap();
        assert_eq!((r.upstream.as_str(), r.port), ("/a", 80));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].warning);
        assert_eq!(problems[0].path.to_string(), "Routes[0].Typo");
    }

    #[test]
    fn broken_entities_are_all_reported() {
        let n = parse_yaml("Routes:\n- {UpstreamPathTemplate: /a, Port: x}\n- {UpstreamPathTemplate: /b}\n- {Port: 1}\n").unwrap();
        let (f, problems) = from_node::<File>(&n, Dialect::Kong);
        let f = f.unwrap();
        assert_eq!(f.routes.0.len(), 3);
        assert!(f.routes.0[1].is_some());
        let msgs: Vec<String> = problems
            .iter()
            .map(|p| format!("{}:{}: {}", p.path, p.span.unwrap().line, p.message))
            .collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(
            msgs[0].starts_with("Routes[0].Port:2: expected a non-negative integer"),
            "{msgs:?}"
        );
        assert!(
            msgs[1].starts_with("Routes[2]:4: missing field `UpstreamPathTemplate`"),
            "{msgs:?}"
        );
    }
}
