//! Diagnostics: every problem found while loading config, with the file, line, column and
//! entity path it belongs to. Loading never stops at the first problem; it collects them all.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::node::{Node, Span};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One step of an entity path: `services[0].routes[1].paths[0]`. Keys are mostly field
/// names known at compile time: borrowed, a path is extended without copying its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(Cow<'static, str>),
    Index(usize),
}

/// A path inside one config file, rendered the way users read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(pub Vec<Seg>);

impl Path {
    pub fn root() -> Self {
        Path(Vec::new())
    }
    pub fn key(&self, k: impl Into<Cow<'static, str>>) -> Path {
        self.with(Seg::Key(k.into()))
    }
    pub fn index(&self, i: usize) -> Path {
        self.with(Seg::Index(i))
    }
    /// The path as users read it, e.g. `services[0].routes[1]`: every entity's origin
    /// renders its path, so it is written straight into a string sized once.
    pub fn render(&self) -> String {
        let len = self
            .0
            .iter()
            .map(|seg| match seg {
                Seg::Key(k) => k.len() + 1,
                Seg::Index(_) => 8,
            })
            .sum();
        let mut s = String::with_capacity(len);
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Seg::Index(n) => {
                    let mut digits = [0u8; 20];
                    let mut at = digits.len();
                    let mut n = *n;
                    loop {
                        at -= 1;
                        digits[at] = b'0' + (n % 10) as u8;
                        n /= 10;
                        if n == 0 {
                            break;
                        }
                    }
                    s.push('[');
                    s.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
                    s.push(']');
                }
            }
        }
        s
    }
    fn with(&self, last: Seg) -> Path {
        // Sized once: a clone then a push would allocate twice.
        let mut segs = Vec::with_capacity(self.0.len() + 1);
        segs.extend_from_slice(&self.0);
        segs.push(last);
        Path(segs)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.severity == Severity::Warning {
            write!(f, ": warning")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A parsed config file: its name (as shown in messages) and its spanned tree, so that
/// problems found after deserialisation can still point at a line and column.
#[derive(Debug)]
pub struct SourceFile {
    pub name: String,
    pub root: Node,
    /// Ocelot keys match case-insensitively, Kong keys exactly.
    pub case_insensitive: bool,
}

impl SourceFile {
    /// The position of the deepest node along `path` (a missing key points at its parent).
    pub fn span_of(&self, path: &Path) -> Span {
        let mut node = &self.root;
        for seg in &path.0 {
            let next = match seg {
                Seg::Key(k) => node.get(k, self.case_insensitive),
                Seg::Index(i) => node.index(*i),
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.span
    }
}

/// The sink every loader writes into.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(
        &mut self,
        severity: Severity,
        file: &SourceFile,
        path: &Path,
        msg: impl Into<String>,
    ) {
        let span = file.span_of(path);
        self.items.push(Diagnostic {
            severity,
            file: file.name.clone(),
            line: span.line,
            column: span.col,
            path: path.to_string(),
            message: msg.into(),
        });
    }
    pub fn error(&mut self, file: &SourceFile, path: &Path, msg: impl Into<String>) {
        self.push(Severity::Error, file, path, msg)
    }
    pub fn warn(&mut self, file: &SourceFile, path: &Path, msg: impl Into<String>) {
        self.push(Severity::Warning, file, path, msg)
    }
    /// A problem that belongs to a file but to no position in it (unreadable file, clash
    /// between files).
    pub fn file_error(&mut self, file: &str, msg: impl Into<String>) {
        self.items.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            line: 0,
            column: 0,
            path: String::new(),
            message: msg.into(),
        });
    }
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
}

/// The nearest of `known` to `word` (case-insensitive edit distance), for "did you mean".
pub fn nearest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    known
        .into_iter()
        .map(|k| (edit_distance(&w, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| *d <= (k.len().max(w.len()) / 2).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

pub type SharedSource = Arc<SourceFile>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_suggests_close_keys() {
        let known = [
            "DownstreamHostAndPorts",
            "DownstreamPathTemplate",
            "UpstreamPathTemplate",
        ];
        assert_eq!(
            nearest("DownstreamStreamHostAndPorts", known),
            Some("DownstreamHostAndPorts")
        );
        assert_eq!(nearest("Zebra", known), None);
    }

    #[test]
    fn path_renders_like_users_write_it() {
        let p = Path::root()
            .key("services")
            .index(0)
            .key("routes")
            .index(1)
            .key("paths")
            .index(0);
        assert_eq!(p.to_string(), "services[0].routes[1].paths[0]");
    }
}
