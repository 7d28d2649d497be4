//! The fast path for block-style YAML, the shape decK writes and most Kong files are in:
//! indented mappings and `- ` sequences of one-line scalars and one-line flow collections.
//! text ─▶ `parse` ─▶ the same spanned `Node` tree the full YAML parser builds, or `None`.
//!
//! A reload re-reads the whole file, and a general YAML scanner spent most of a 10,000-route
//! reload classifying characters one at a time. This reads the subset a line at a time, literal
//! block scalars (`|`) included, and gives up (`None`) on anything else — anchors, tags, folded
//! and multi-line scalars, multi-line flow collections, merge keys, directives, more documents,
//! tabs, CR — and on every error, so the full parser (`node::parse_yaml_full`) still decides
//! what such a file means and reports its errors with their positions. The two agree node for
//! node and span for span where this one answers; tests compare them on real users' files.

use compact_str::CompactString;

use super::node::{Node, Scalar, Span, Value};

/// Deeper nesting goes to the full parser, whose tree builder keeps its own stack.
const MAX_DEPTH: usize = 64;

/// The tree of `text`, or `None` when it is outside the subset (or not valid YAML).
pub fn parse(text: &str) -> Option<Node> {
    let ascii = text.is_ascii();
    if text.bytes().any(|b| (b < b' ' && b != b'\n') || b == 0x7f)
        || (!ascii && text.chars().any(special))
    {
        return None;
    }
    let mut p = Parser {
        s: text.as_bytes(),
        ascii,
        pos: 0,
        line: 1,
        line_start: 0,
        depth: 0,
    };
    p.skip_blank_lines();
    if p.col() == 0 && p.s[p.pos..].starts_with(b"---") && p.is_blank_or_end(p.pos + 3) {
        p.pos += 3;
        p.end_line()?;
    }
    if p.at_end() {
        return None;
    }
    let root = p.block_node()?;
    p.at_end().then_some(root)
}

/// Characters the full parser treats otherwise than as text: a byte-order mark, line breaks
/// beyond LF (YAML 1.1's), and what YAML does not allow to be printed.
fn special(c: char) -> bool {
    matches!(
        c,
        '\u{80}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
    )
}

struct Parser<'a> {
    s: &'a [u8],
    /// Columns count characters; with ASCII text they are bytes.
    ascii: bool,
    pos: usize,
    /// 1-based line of `pos`.
    line: u32,
    line_start: usize,
    depth: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek_at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(b'\n')
    }

    fn peek(&self) -> u8 {
        self.peek_at(self.pos)
    }

    fn col(&self) -> usize {
        self.pos - self.line_start
    }

    fn span(&self) -> Span {
        let col = if self.ascii {
            self.col()
        } else {
            let before = &self.s[self.line_start..self.pos];
            before.iter().filter(|&&b| b & 0xc0 != 0x80).count()
        };
        Span {
            line: self.line,
            col: col as u32 + 1,
        }
    }

    /// A space, a line end or the end of the text at `i`.
    fn is_blank_or_end(&self, i: usize) -> bool {
        matches!(self.peek_at(i), b' ' | b'\n')
    }

    fn skip_spaces(&mut self) {
        while self.peek() == b' ' && !self.at_end() {
            self.pos += 1;
        }
    }

    /// Moves to the first character of the next line that has any, past blank and comment lines;
    /// `pos` starts at the beginning of a line.
    fn skip_blank_lines(&mut self) {
        loop {
            self.skip_spaces();
            match self.s.get(self.pos) {
                None => return,
                Some(b'\n') => {}
                Some(b'#') => {
                    self.skip_to_line_end();
                    if self.at_end() {
                        return;
                    }
                }
                Some(_) => return,
            }
            self.next_line();
        }
    }

    /// `skip_blank_lines` within the document: `None` at a document marker, because the full
    /// parser handles several documents.
    fn next_content_line(&mut self) -> Option<()> {
        self.skip_blank_lines();
        let line = &self.s[self.line_start..];
        let marker = line.starts_with(b"---") || line.starts_with(b"...");
        (self.col() != 0 || !marker || !self.is_blank_or_end(self.pos + 3)).then_some(())
    }

    /// Past the line break at `pos`.
    fn next_line(&mut self) {
        self.pos += 1;
        self.line += 1;
        self.line_start = self.pos;
    }

    fn skip_to_line_end(&mut self) {
        while !self.at_end() && self.peek() != b'\n' {
            self.pos += 1;
        }
    }

    /// Spaces, and a comment after them.
    fn skip_comment(&mut self) {
        let before = self.pos;
        self.skip_spaces();
        if self.peek() == b'#' && self.pos > before {
            self.skip_to_line_end();
        }
    }

    /// After a value: spaces, perhaps a comment, the line end; then on to the next content line.
    fn end_line(&mut self) -> Option<()> {
        self.skip_comment();
        if self.at_end() {
            return Some(());
        }
        if self.peek() != b'\n' {
            return None;
        }
        self.next_line();
        self.next_content_line()
    }

    /// At a `- ` (or a `-` ending its line) that opens a sequence entry.
    fn at_entry(&self) -> bool {
        self.peek() == b'-' && self.is_blank_or_end(self.pos + 1)
    }

    /// At the end of a line's content: its end, or a comment.
    fn at_line_end(&self) -> bool {
        matches!(self.peek(), b'\n') || (self.peek() == b'#' && self.peek_at(self.pos - 1) == b' ')
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// A block mapping or sequence starting at `pos`, whose column is its indentation.
    fn block_node(&mut self) -> Option<Node> {
        if self.at_entry() {
            return self.block_seq(false);
        }
        let col = self.col();
        let key = self.key()?;
        self.block_map(col, key)
    }

    /// A block sequence; `indentless` when it is a mapping value at the mapping's own column.
    fn block_seq(&mut self, indentless: bool) -> Option<Node> {
        self.enter()?;
        let col = self.col();
        // The full parser places an indentless sequence where its first entry's content starts.
        let mut span = (!indentless).then(|| self.span());
        let mut items = Vec::new();
        loop {
            self.pos += 1;
            self.skip_spaces();
            span.get_or_insert(self.span());
            let item = if self.at_line_end() {
                self.end_line()?;
                if self.at_end() || self.col() <= col {
                    return None;
                }
                self.block_node()?
            } else if self.at_entry() {
                self.block_node()?
            } else if self.peek() == b'|' {
                self.literal(col)?
            } else {
                let item_start = self.pos;
                let item_col = self.col();
                let value = self.scalar_or_flow(false)?;
                if self.is_key_end(&value, item_start) {
                    self.block_map(item_col, value)?
                } else {
                    self.end_value(col)?;
                    value
                }
            };
            items.push(item);
            if self.at_end() || self.col() < col {
                break;
            }
            if self.col() > col {
                return None;
            }
            if !self.at_entry() {
                // The parent mapping's next key, after an indentless sequence.
                break;
            }
        }
        self.depth -= 1;
        Some(Node {
            span: span?,
            value: Value::Seq(items),
        })
    }

    /// A block mapping at column `col` whose first key has been read.
    fn block_map(&mut self, col: usize, first_key: Node) -> Option<Node> {
        self.enter()?;
        let span = first_key.span;
        let mut entries = Vec::new();
        let mut key = first_key;
        loop {
            // `pos` is at the `:` after the key. A merge key (the full parser's tree builder
            // merges under `<<` however it is quoted) is left to the full parser.
            if key.as_str() == Some("<<") {
                return None;
            }
            let colon = self.span();
            self.pos += 1;
            self.skip_spaces();
            let value = if self.at_line_end() {
                self.end_line()?;
                if !self.at_end() && self.col() > col {
                    self.block_node()?
                } else if !self.at_end() && self.col() == col && self.at_entry() {
                    self.block_seq(true)?
                } else {
                    empty(colon)
                }
            } else if self.peek() == b'|' {
                self.literal(col)?
            } else {
                let value = self.scalar_or_flow(false)?;
                self.end_value(col)?;
                value
            };
            entries.push((key, value));
            if self.at_end() || self.col() < col {
                break;
            }
            if self.col() > col || self.at_entry() {
                return None;
            }
            key = self.key()?;
        }
        self.depth -= 1;
        Some(Node {
            span,
            value: Value::Map(entries),
        })
    }

    /// A mapping key: a scalar and the `:` after it, where `pos` is left.
    fn key(&mut self) -> Option<Node> {
        let start = self.pos;
        let key = self.scalar_or_flow(false)?;
        self.is_key_end(&key, start).then_some(key)
    }

    /// Whether the scalar just read from `start` is a key: a `:` follows (after spaces for
    /// quoted ones), then a space or the line end. Leaves `pos` at the `:` when it is. A key
    /// longer than YAML's 1,024 characters is an error, left to the full parser to report.
    fn is_key_end(&mut self, node: &Node, start: usize) -> bool {
        let Value::Scalar(_) = node.value else {
            return false;
        };
        let save = self.pos;
        self.skip_spaces();
        if self.peek() == b':' && self.is_blank_or_end(self.pos + 1) && self.pos - start < 1000 {
            return true;
        }
        self.pos = save;
        false
    }

    /// After an inline value of a collection at column `col`: the rest of its line, and no deeper
    /// line after it (that would be a multi-line scalar or an error).
    fn end_value(&mut self, col: usize) -> Option<()> {
        self.end_line()?;
        (self.at_end() || self.col() <= col).then_some(())
    }

    /// A literal block scalar (`|`, `|-`, `|+`) in a collection at column `col`: certificates
    /// and keys are written so. Its lines run while they are indented as deep as the first
    /// one. Folded scalars, explicit indentation, and lines of spaces alone go to the full
    /// parser.
    fn literal(&mut self, col: usize) -> Option<Node> {
        self.pos += 1;
        let chomp = self.peek();
        if matches!(chomp, b'-' | b'+') {
            self.pos += 1;
        }
        self.skip_comment();
        if self.at_end() || self.peek() != b'\n' {
            return None;
        }
        let mut text = Vec::new();
        let mut indent = None;
        // The full parser places a literal where its first line's text starts.
        let mut span = Span::default();
        let mut breaks = 0;
        loop {
            // `pos` is at the end of a line: the header's or a content line's.
            if self.at_end() {
                return None;
            }
            self.next_line();
            self.skip_spaces();
            let spaces = self.col();
            if self.at_end() {
                if spaces > 0 {
                    return None;
                }
                break;
            }
            if self.peek() == b'\n' {
                if spaces > 0 {
                    return None;
                }
                breaks += 1;
                continue;
            }
            let depth = *indent.get_or_insert_with(|| {
                span = self.span();
                spaces
            });
            if spaces < depth || depth <= col {
                // The first line after the scalar (or none in it): back to its start.
                if text.is_empty() {
                    return None;
                }
                self.pos = self.line_start;
                break;
            }
            if !text.is_empty() {
                text.push(b'\n');
            }
            text.extend(std::iter::repeat_n(b'\n', breaks));
            breaks = 0;
            let from = self.line_start + depth;
            self.skip_to_line_end();
            text.extend_from_slice(&self.s[from..self.pos]);
        }
        // An empty literal; the full parser places it elsewhere.
        indent?;
        match chomp {
            b'-' => {}
            b'+' => text.extend(std::iter::repeat_n(b'\n', breaks + 1)),
            _ => text.push(b'\n'),
        }
        self.next_content_line()?;
        (self.at_end() || self.col() <= col).then(|| scalar(span, &text, false))
    }

    /// A one-line scalar or flow collection, in a block collection or inside a flow one.
    fn scalar_or_flow(&mut self, in_flow: bool) -> Option<Node> {
        match self.peek() {
            b'[' | b'{' => self.flow(),
            b'"' => self.double_quoted(),
            b'\'' => self.single_quoted(),
            _ => self.plain(in_flow),
        }
    }

    /// A flow sequence or mapping that ends on its line.
    fn flow(&mut self) -> Option<Node> {
        self.enter()?;
        let span = self.span();
        let is_map = self.peek() == b'{';
        let close = if is_map { b'}' } else { b']' };
        self.pos += 1;
        let mut items = Vec::new();
        let mut entries = Vec::new();
        loop {
            self.skip_spaces();
            if self.peek() == close {
                self.pos += 1;
                break;
            }
            let item = self.scalar_or_flow(true)?;
            self.skip_spaces();
            if is_map {
                if self.peek() != b':' || item.as_str() == Some("<<") {
                    return None;
                }
                self.pos += 1;
                self.skip_spaces();
                let value = self.scalar_or_flow(true)?;
                entries.push((item, value));
                self.skip_spaces();
            } else {
                if self.peek() == b':' {
                    return None;
                }
                items.push(item);
            }
            match self.peek() {
                b',' => self.pos += 1,
                c if c == close => {
                    self.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
        self.depth -= 1;
        let value = if is_map {
            Value::Map(entries)
        } else {
            Value::Seq(items)
        };
        Some(Node { span, value })
    }

    /// A plain scalar on one line. In a flow collection it also ends at `,[]{}`.
    fn plain(&mut self, in_flow: bool) -> Option<Node> {
        let span = self.span();
        let start = self.pos;
        let first = self.peek();
        let indicator = matches!(
            first,
            b',' | b'['
                | b']'
                | b'{'
                | b'}'
                | b'#'
                | b'&'
                | b'*'
                | b'!'
                | b'|'
                | b'>'
                | b'\''
                | b'"'
                | b'%'
                | b'@'
                | b'`'
                | b'\n'
                | b' '
        );
        let needs_more = matches!(first, b'-' | b'?' | b':');
        if indicator || (needs_more && self.ends_plain(self.pos + 1, in_flow)) {
            return None;
        }
        loop {
            let c = self.peek();
            if self.at_end() || c == b'\n' {
                break;
            }
            if c == b':' && self.ends_plain(self.pos + 1, in_flow) {
                break;
            }
            if c == b' ' && self.peek_at(self.pos + 1) == b'#' {
                break;
            }
            if in_flow && matches!(c, b',' | b'[' | b']' | b'{' | b'}') {
                break;
            }
            self.pos += 1;
        }
        let text = trim_end(&self.s[start..self.pos]);
        Some(scalar(span, text, true))
    }

    /// Whether the character at `i` ends a plain scalar after a `:` (or makes `-?:` an
    /// indicator at its start).
    fn ends_plain(&self, i: usize, in_flow: bool) -> bool {
        let c = self.peek_at(i);
        i >= self.s.len()
            || matches!(c, b' ' | b'\n')
            || (in_flow && matches!(c, b',' | b'[' | b']' | b'{' | b'}'))
    }

    fn single_quoted(&mut self) -> Option<Node> {
        let span = self.span();
        self.pos += 1;
        let mut text = Vec::new();
        loop {
            match self.s.get(self.pos)? {
                b'\n' => return None,
                b'\'' if self.peek_at(self.pos + 1) == b'\'' => {
                    text.push(b'\'');
                    self.pos += 2;
                }
                b'\'' => break,
                &c => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        self.pos += 1;
        Some(scalar(span, &text, false))
    }

    fn double_quoted(&mut self) -> Option<Node> {
        let span = self.span();
        self.pos += 1;
        let mut text = Vec::new();
        loop {
            let c = *self.s.get(self.pos)?;
            self.pos += 1;
            match c {
                b'\n' => return None,
                b'"' => break,
                b'\\' => {
                    let e = *self.s.get(self.pos)?;
                    self.pos += 1;
                    let ch = match e {
                        b'0' => '\0',
                        b'a' => '\x07',
                        b'b' => '\x08',
                        b't' => '\t',
                        b'n' => '\n',
                        b'v' => '\x0b',
                        b'f' => '\x0c',
                        b'r' => '\r',
                        b'e' => '\x1b',
                        b' ' | b'"' | b'/' | b'\\' => e as char,
                        b'N' => '\u{85}',
                        b'_' => '\u{a0}',
                        b'L' => '\u{2028}',
                        b'P' => '\u{2029}',
                        b'x' => self.hex(2)?,
                        b'u' => self.hex(4)?,
                        b'U' => self.hex(8)?,
                        _ => return None,
                    };
                    text.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                }
                c => text.push(c),
            }
        }
        Some(scalar(span, &text, false))
    }

    fn hex(&mut self, digits: usize) -> Option<char> {
        let hex = self.s.get(self.pos..self.pos + digits)?;
        self.pos += digits;
        let hex = std::str::from_utf8(hex).ok()?;
        char::from_u32(u32::from_str_radix(hex, 16).ok()?)
    }
}

fn trim_end(mut text: &[u8]) -> &[u8] {
    while let [rest @ .., b' '] = text {
        text = rest;
    }
    text
}

fn scalar(span: Span, text: &[u8], plain: bool) -> Node {
    Node {
        span,
        value: Value::Scalar(Scalar {
            // Cut at ASCII characters, or built from chars: always UTF-8.
            text: CompactString::from_utf8_lossy(text),
            plain,
        }),
    }
}

/// A key with nothing after it: null, where the full parser puts it.
fn empty(span: Span) -> Node {
    Node {
        span,
        value: Value::Scalar(Scalar {
            text: CompactString::default(),
            plain: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::config::node::parse_yaml_full;

    /// Documents in the subset: the same tree as the full parser, spans included.
    #[test]
    fn the_subset_parses_as_the_full_parser_does() {
        let docs = [
            "a: 1\nb: 'x'\nc: \"y\\n\"\n",
            "---\nx: [a, 'b', \"c\", [d], {e: f}]\ny: {}\nz: []\n",
            "a:\n- b\n- c: d\n  e: f\n- - g\n  - h\ng: ~\n",
            "a:   \nb:\n\n  # comment\n  c: d # trailing\nz:",
            "k : v\n\"q k\": 1\n'x''y': 2\n",
            "- a\n- b: c\n-\n  d: e\n",
            "a: [x,]\nb: [ y , z ]\nc: {\"j\":1, k: [2]}\n",
            "a: b#c\nurl: http://x:80/y?z=1&w=2 # comment\nn: -1\nm: a:b\n",
            "a: \"\\x41\\u00e9\\t\\\\\\\"\"\n",
            "# é comment\nname: café\nnext: 'ü'\nlast: [ö, \"ä\"]\n",
            "services:\n  - name: s\n    routes:\n    - paths:\n      - /a\n      strip_path: false\n",
            "- - a\n  - b\n- c\n",
            "cert: |\n  -----BEGIN-----\n  abc  \n\n    def\n  -----END-----\nkey: |-\n  k\n\n\nz: 1\n",
            "a: |+ # keep\n  x\n\n\n# c\nb:\n  - |\n    y\n    # not a comment\n  - |-\n    z\n",
            "a: |\n\n  x\n",
            "a: b[c]\nd: e, f\ng: h}i\nk: -x\nl: ?y\nm: :z\nn: a'b\"c\n",
        ];
        for doc in docs {
            let fast = parse(doc).unwrap_or_else(|| panic!("fast path gave up on {doc:?}"));
            assert_eq!(fast, parse_yaml_full(doc).unwrap(), "{doc:?}");
        }
    }

    /// Documents stitched from YAML's pieces at random, most of them invalid: wherever the fast
    /// path answers, the full parser must accept the document and build the same tree.
    #[test]
    fn random_documents_never_get_another_answer() {
        const PIECES: &[&str] = &[
            "a", "b c", ":", ": ", " ", "  ", "\n", "\n  ", "\n    ", "- ", "-", "[", "]", "{",
            "}", ", ", "'", "\"", "#", " #x", "|", "|-", "\\n", "~", "---", "k: v\n", "- x\n",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut answered = 0;
        for _ in 0..200_000 {
            let len = 1 + next() % 16;
            let doc: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            if let Some(fast) = parse(&doc) {
                answered += 1;
                let full = parse_yaml_full(&doc)
                    .unwrap_or_else(|e| panic!("{doc:?}: accepted, but {}", e.message));
                assert_eq!(fast, full, "{doc:?}");
            }
        }
        assert!(answered > 1_000, "{answered}");
    }

    /// Outside the subset, or not YAML: left to the full parser.
    #[test]
    fn the_rest_is_left_to_the_full_parser() {
        let docs = [
            "a: &x 1\nb: *x\n",
            "a: >\n  x\n",
            "a: |2\n   x\n",
            "a: |\n  x\n   \n",
            "a: |\n  x",
            "a: |\n",
            "a: !!str 1\n",
            "a: b\n  c\n",
            "a: [x,\n  y]\n",
            "---\na: 1\n---\nb: 2\n",
            "a: 1\n...\n",
            "a: 1\r\n",
            "a:\tb\n",
            "<<: {a: 1}\nb: 2\n",
            "b: 2\n'<<': {a: 1}\n",
            "b: {<<: {a: 1}}\n",
            "? a\n: b\n",
            "%YAML 1.2\n---\na: 1\n",
            "\u{feff}a: 1\n",
            "a: 'x\n  y'\n",
            "",
            "just a scalar\n",
            "a: b: c\n",
            "a: \"x\" y\n",
            "a:\n    b: 1\n  c: 2\n",
            "- a\n  - b\n",
            &format!("{}: 1\n", "k".repeat(1100)),
        ];
        for doc in docs {
            assert!(parse(doc).is_none(), "{doc:?}");
        }
    }
}
