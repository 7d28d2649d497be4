//! Kong's value templates, as request-transformer compiles them with Penlight's
//! `pl.template`: text with `$(expr)` pieces (balanced parentheses, Lua's `%b()`), each a
//! Lua expression rendered as `tostring(expr or '')`, evaluated in Kong's default sandbox
//! (`untrusted_lua = sandbox`) with the request's tables:
//!
//! - `headers`: the request headers (lower-case names; a repeated header is a list; a name
//!   looked up with capitals or `_` finds the header as nginx's table does);
//! - `query_params`: the query arguments as nginx decodes them (a bare name is `true`);
//! - `uri_captures`: the route's regex captures (`[0]` the whole match, then by position
//!   and by name).
//!
//! Each table is read from the request the first time an expression touches it and kept for
//! the rest of the request (`Env`), as Kong's lazily filled `template_env` is.
//!
//! The expressions switchyard evaluates are Lua's: literals, the tables above, indexing,
//! `and`/`or`/`not`, comparisons, `..`, arithmetic, `#`, and calls of `type`, `tostring`,
//! `tonumber` and `string.len/lower/upper/sub/rep/reverse` (also as `s:lower()`). A
//! template using anything else Kong's sandbox offers (`kong`, `ngx`, `shared`, `math`,
//! `string.format`, ...) or Lua syntax beyond expressions does not compile here: the plugin
//! is not built and its routes are closed rather than served differently. A name the
//! sandbox does not have is `nil`, as in Kong, and errors at run time (calling it, indexing
//! it) are errors here too.
//!
//! Templates are compiled once, when the plugin is built.

use http::HeaderMap;

use super::args::{ArgValue, Args, MAX_ARGS};
use crate::exchange::UriCaptures;

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Piece>,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(Vec<u8>),
    Expr(Expr),
}

/// What templates read from the request.
pub struct Source<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub captures: Option<&'a UriCaptures<'a>>,
}

/// The tables templates loaded, once per request.
#[derive(Debug, Default)]
pub struct Env {
    headers: Option<HeaderMap>,
    query: Option<Args>,
}

impl Env {
    /// `query_params`: loaded now unless an expression loaded it before.
    pub fn query(&mut self, src: &Source<'_>) -> &Args {
        self.query
            .get_or_insert_with(|| Args::decode(src.query.unwrap_or("").as_bytes(), MAX_ARGS))
    }

    fn headers(&mut self, src: &Source<'_>) -> &HeaderMap {
        self.headers.get_or_insert_with(|| src.headers.clone())
    }

    /// `headers` was loaded already.
    pub fn has_headers(&self) -> bool {
        self.headers.is_some()
    }
}

impl Template {
    /// Compiles `src`; `Err` says what switchyard does not evaluate.
    pub fn compile(src: &str) -> Result<Template, String> {
        let b = src.as_bytes();
        let mut parts = Vec::new();
        let mut text_from = 0;
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'$'
                && b.get(i + 1) == Some(&b'(')
                && let Some(close) = balanced(b, i + 1)
            {
                if text_from < i {
                    parts.push(Piece::Text(b[text_from..i].to_vec()));
                }
                let inner = &src[i + 2..close];
                let expr = parse(inner).map_err(|e| format!("`$({inner})`: {e}"))?;
                parts.push(Piece::Expr(expr));
                i = close + 1;
                text_from = i;
            } else {
                i += 1;
            }
        }
        if text_from < b.len() {
            parts.push(Piece::Text(b[text_from..].to_vec()));
        }
        Ok(Template { parts })
    }

    /// The text, when the template has no expression.
    pub fn constant(&self) -> Option<&[u8]> {
        match self.parts.as_slice() {
            [] => Some(b""),
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Some expression reads `headers`.
    pub fn reads_headers(&self) -> bool {
        self.parts.iter().any(|p| match p {
            Piece::Text(_) => false,
            Piece::Expr(e) => e.reads(Global::Headers),
        })
    }

    /// Renders the template; `Err` is the Lua error Kong would raise.
    pub fn render(&self, env: &mut Env, src: &Source<'_>) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for p in &self.parts {
            match p {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Expr(e) => {
                    let v = e.eval(&mut Eval { env, src })?;
                    let v = if v.truthy() { v } else { Val::Str(Vec::new()) };
                    out.extend_from_slice(&v.to_lua_string());
                }
            }
        }
        Ok(out)
    }
}

/// Lua's `%b()` from `open` (a `(`): the index of the matching `)`, counting parentheses only.
fn balanced(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

// === values ===

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Nil,
    Bool(bool),
    Num(f64),
    Str(Vec<u8>),
    Table(Table),
    Func(Func),
}

#[derive(Debug, Clone, PartialEq)]
enum Table {
    Headers,
    Query,
    Captures,
    StringLib,
    /// A repeated header's or argument's values; `origin` stands for its identity.
    List {
        origin: Vec<u8>,
        items: Vec<Val>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Type,
    ToString,
    ToNumber,
    Str(StrFn),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrFn {
    Len,
    Lower,
    Upper,
    Sub,
    Rep,
    Reverse,
}

impl StrFn {
    fn named(name: &[u8]) -> Option<StrFn> {
        Some(match name {
            b"len" => StrFn::Len,
            b"lower" => StrFn::Lower,
            b"upper" => StrFn::Upper,
            b"sub" => StrFn::Sub,
            b"rep" => StrFn::Rep,
            b"reverse" => StrFn::Reverse,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            StrFn::Len => "len",
            StrFn::Lower => "lower",
            StrFn::Upper => "upper",
            StrFn::Sub => "sub",
            StrFn::Rep => "rep",
            StrFn::Reverse => "reverse",
        }
    }
}

/// The string library functions switchyard does not evaluate (as methods; `dump` is not in
/// the sandbox's `string` table but strings reach it as a method).
const STRING_UNSUPPORTED: [&str; 8] = [
    "byte", "char", "dump", "find", "format", "gmatch", "gsub", "match",
];

/// The names Kong's sandbox environment has that switchyard does not evaluate
/// (`kong/tools/sandbox/environment/lua.lua`, `require`, `kong`, `ngx`, and the lazily
/// loaded `shared`).
const SANDBOX_UNSUPPORTED: [&str; 23] = [
    "_G",
    "_VERSION",
    "assert",
    "bit",
    "coroutine",
    "error",
    "io",
    "ipairs",
    "jit",
    "kong",
    "math",
    "next",
    "ngx",
    "os",
    "pairs",
    "pcall",
    "print",
    "require",
    "select",
    "shared",
    "table",
    "unpack",
    "xpcall",
];

impl Val {
    fn truthy(&self) -> bool {
        !matches!(self, Val::Nil | Val::Bool(false))
    }

    fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(_) => "boolean",
            Val::Num(_) => "number",
            Val::Str(_) => "string",
            Val::Table(_) => "table",
            Val::Func(_) => "function",
        }
    }

    /// Lua's `tostring`.
    fn to_lua_string(&self) -> Vec<u8> {
        match self {
            Val::Nil => b"nil".to_vec(),
            Val::Bool(b) => if *b { &b"true"[..] } else { b"false" }.to_vec(),
            Val::Num(n) => fmt_num(*n).into_bytes(),
            Val::Str(s) => s.clone(),
            Val::Table(_) => b"table: 0x00000000".to_vec(),
            Val::Func(_) => b"function: builtin".to_vec(),
        }
    }

    /// A number, or a string that reads as one (Lua's arithmetic coercion).
    fn to_num(&self) -> Option<f64> {
        match self {
            Val::Num(n) => Some(*n),
            Val::Str(s) => str_to_num(s),
            _ => None,
        }
    }
}

/// Lua's `%.14g` (LuaJIT's `tostring` of a number).
fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    fn strip(s: &str) -> &str {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            s
        }
    }
    let e = format!("{x:.13e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..14).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip(mantissa), exp.abs())
    } else {
        strip(&format!("{:.*}", (13 - exp) as usize, x)).to_string()
    }
}

/// Lua's string to number conversion: decimal (with fraction and exponent) or hexadecimal,
/// with surrounding whitespace.
fn str_to_num(s: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(s).ok()?;
    let s = s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'));
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let v = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        hex.bytes().fold(0f64, |acc, b| {
            acc * 16.0 + (b as char).to_digit(16).unwrap_or(0) as f64
        })
    } else {
        let (mantissa, exp) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
        let dots = mantissa.bytes().filter(|&b| b == b'.').count();
        if digits == 0 || dots > 1 || digits + dots != mantissa.len() {
            return None;
        }
        if let Some(exp) = exp {
            let e = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
        }
        body.parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

// === syntax ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    Headers,
    Query,
    Captures,
    StringLib,
    Type,
    ToString,
    ToNumber,
    /// A name Kong's sandbox does not have: `nil`.
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Concat,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnOp {
    Not,
    Neg,
    Len,
}

#[derive(Debug, Clone)]
enum Expr {
    Const(Val),
    Global(Global),
    Index(Box<Expr>, Box<Expr>),
    Call(Box<Expr>, Vec<Expr>),
    Method(Box<Expr>, Vec<u8>, Vec<Expr>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    fn reads(&self, g: Global) -> bool {
        match self {
            Expr::Const(_) => false,
            Expr::Global(x) => *x == g,
            Expr::Index(a, b) | Expr::Binary(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
                a.reads(g) || b.reads(g)
            }
            Expr::Call(f, args) | Expr::Method(f, _, args) => {
                f.reads(g) || args.iter().any(|a| a.reads(g))
            }
            Expr::Unary(_, a) => a.reads(g),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Num(f64),
    Str(Vec<u8>),
    Sym(&'static str),
    Eof,
}

const SYMBOLS: [&str; 22] = [
    "...", "..", "==", "~=", "<=", ">=", "+", "-", "*", "/", "%", "^", "#", "<", ">", "(", ")",
    "[", "]", ":", ",", ".",
];

const KEYWORDS: [&str; 16] = [
    "break", "do", "else", "elseif", "end", "for", "function", "goto", "if", "in", "local",
    "repeat", "return", "then", "until", "while",
];

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            return Err("a comment is not an expression".into());
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            toks.push(Tok::Name(src[start..i].to_string()));
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let start = i;
            while i < b.len() {
                let d = b[i];
                if (d == b'+' || d == b'-') && matches!(b[i - 1], b'e' | b'E') {
                    // An exponent's sign, unless in a hexadecimal literal.
                    if src[start..].starts_with("0x") || src[start..].starts_with("0X") {
                        break;
                    }
                    i += 1;
                } else if d.is_ascii_alphanumeric() || d == b'.' || d == b'_' {
                    i += 1;
                } else {
                    break;
                }
            }
            let n = str_to_num(&b[start..i]).ok_or("malformed number")?;
            toks.push(Tok::Num(n));
        } else if c == b'"' || c == b'\'' {
            let (s, end) = short_string(b, i)?;
            toks.push(Tok::Str(s));
            i = end;
        } else if c == b'[' && matches!(b.get(i + 1), Some(b'[' | b'=')) {
            let mut level = 0;
            let mut j = i + 1;
            while b.get(j) == Some(&b'=') {
                level += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'[') {
                return Err("invalid long string delimiter".into());
            }
            let close = format!("]{}]", "=".repeat(level));
            let mut body_start = j + 1;
            // A newline right after the opening bracket is skipped.
            if b.get(body_start) == Some(&b'\r') {
                body_start += 1;
            }
            if b.get(body_start) == Some(&b'\n') {
                body_start += 1;
            }
            let end = src[body_start..]
                .find(&close)
                .ok_or("unfinished long string")?;
            toks.push(Tok::Str(b[body_start..body_start + end].to_vec()));
            i = body_start + end + close.len();
        } else if let Some(sym) = SYMBOLS.iter().find(|s| src[i..].starts_with(**s)) {
            toks.push(Tok::Sym(sym));
            i += sym.len();
        } else {
            return Err(format!(
                "`{}` is not part of an expression switchyard evaluates",
                &src[i..].chars().next().unwrap_or(' ')
            ));
        }
    }
    toks.push(Tok::Eof);
    Ok(toks)
}

/// A quoted string from `b[start]` (its quote) with Lua's escapes; the string and the index
/// after its closing quote.
fn short_string(b: &[u8], start: usize) -> Result<(Vec<u8>, usize), String> {
    let quote = b[start];
    let mut out = Vec::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = b.get(i) else {
            return Err("unfinished string".into());
        };
        match c {
            _ if c == quote => return Ok((out, i + 1)),
            b'\n' | b'\r' => return Err("unfinished string".into()),
            b'\\' => {
                let Some(&e) = b.get(i + 1) else {
                    return Err("unfinished string".into());
                };
                i += 2;
                match e {
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' | b'\n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(11),
                    b'\\' | b'"' | b'\'' => out.push(e),
                    b'x' => {
                        let h = b.get(i..i + 2).and_then(|h| std::str::from_utf8(h).ok());
                        let v = h
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                            .ok_or("invalid escape sequence")?;
                        out.push(v);
                        i += 2;
                    }
                    b'z' => {
                        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
                            i += 1;
                        }
                    }
                    d if d.is_ascii_digit() => {
                        let mut v = (d - b'0') as u32;
                        for _ in 0..2 {
                            match b.get(i) {
                                Some(d) if d.is_ascii_digit() => {
                                    v = v * 10 + (d - b'0') as u32;
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(u8::try_from(v).map_err(|_| "escape sequence too large")?);
                    }
                    _ => return Err("invalid escape sequence".into()),
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// Parses one Lua expression (what `$(...)` holds).
fn parse(src: &str) -> Result<Expr, String> {
    let toks = lex(src)?;
    let mut p = Parser { toks, at: 0 };
    let e = p.expr(0)?;
    if p.peek() != &Tok::Eof {
        return Err("not a single Lua expression".into());
    }
    check(&e)?;
    Ok(e)
}

/// What compiles but switchyard does not evaluate: `string.format` and the like.
fn check(e: &Expr) -> Result<(), String> {
    match e {
        Expr::Index(t, k) => {
            if matches!(**t, Expr::Global(Global::StringLib)) {
                match &**k {
                    Expr::Const(Val::Str(name)) => {
                        let n = String::from_utf8_lossy(name);
                        if STRING_UNSUPPORTED.contains(&n.as_ref()) {
                            return Err(format!("`string.{n}` is not evaluated by switchyard"));
                        }
                    }
                    _ => return Err("`string` indexed by a computed key".into()),
                }
            }
            check(t)?;
            check(k)
        }
        Expr::Method(t, name, args) => {
            let n = String::from_utf8_lossy(name);
            if STRING_UNSUPPORTED.contains(&n.as_ref()) {
                return Err(format!(
                    "the string method `{n}` is not evaluated by switchyard"
                ));
            }
            check(t)?;
            args.iter().try_for_each(check)
        }
        Expr::Call(f, args) => {
            check(f)?;
            args.iter().try_for_each(check)
        }
        Expr::Binary(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
            check(a)?;
            check(b)
        }
        Expr::Unary(_, a) => check(a),
        Expr::Const(_) | Expr::Global(_) => Ok(()),
    }
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at]
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.at].clone();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn sym(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Sym(x) if *x == s)
    }

    fn expect(&mut self, s: &str) -> Result<(), String> {
        if self.sym(s) {
            self.next();
            Ok(())
        } else {
            Err(format!("`{s}` expected"))
        }
    }

    /// Lua 5.1's `subexpr`: operators by priority (left, right).
    fn expr(&mut self, limit: u8) -> Result<Expr, String> {
        let unary = match self.peek() {
            Tok::Name(n) if n == "not" => Some(UnOp::Not),
            Tok::Sym("-") => Some(UnOp::Neg),
            Tok::Sym("#") => Some(UnOp::Len),
            _ => None,
        };
        let mut left = match unary {
            Some(op) => {
                self.next();
                Expr::Unary(op, Box::new(self.expr(8)?))
            }
            None => self.simple()?,
        };
        loop {
            let (op, lp, rp): (Option<BinOp>, u8, u8) = match self.peek() {
                Tok::Name(n) if n == "or" => (None, 1, 1),
                Tok::Name(n) if n == "and" => (None, 2, 2),
                Tok::Sym(s) => match *s {
                    "<" => (Some(BinOp::Lt), 3, 3),
                    ">" => (Some(BinOp::Gt), 3, 3),
                    "<=" => (Some(BinOp::Le), 3, 3),
                    ">=" => (Some(BinOp::Ge), 3, 3),
                    "~=" => (Some(BinOp::Ne), 3, 3),
                    "==" => (Some(BinOp::Eq), 3, 3),
                    ".." => (Some(BinOp::Concat), 5, 4),
                    "+" => (Some(BinOp::Add), 6, 6),
                    "-" => (Some(BinOp::Sub), 6, 6),
                    "*" => (Some(BinOp::Mul), 7, 7),
                    "/" => (Some(BinOp::Div), 7, 7),
                    "%" => (Some(BinOp::Mod), 7, 7),
                    "^" => (Some(BinOp::Pow), 10, 9),
                    _ => break,
                },
                _ => break,
            };
            if lp <= limit {
                break;
            }
            let word = self.next();
            let right = self.expr(rp)?;
            left = match (op, word) {
                (Some(op), _) => Expr::Binary(op, Box::new(left), Box::new(right)),
                (None, Tok::Name(n)) if n == "and" => Expr::And(Box::new(left), Box::new(right)),
                (None, _) => Expr::Or(Box::new(left), Box::new(right)),
            };
        }
        Ok(left)
    }

    fn simple(&mut self) -> Result<Expr, String> {
        match self.peek().clone() {
            Tok::Num(n) => {
                self.next();
                Ok(Expr::Const(Val::Num(n)))
            }
            Tok::Str(s) => {
                self.next();
                Ok(Expr::Const(Val::Str(s)))
            }
            Tok::Name(n) if n == "nil" => {
                self.next();
                Ok(Expr::Const(Val::Nil))
            }
            Tok::Name(n) if n == "true" || n == "false" => {
                self.next();
                Ok(Expr::Const(Val::Bool(n == "true")))
            }
            Tok::Sym("...") => Err("`...` is not available here".into()),
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let mut e = match self.next() {
            Tok::Name(n) => global(&n)?,
            Tok::Sym("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                e
            }
            Tok::Eof => return Err("an expression is missing".into()),
            t => return Err(format!("unexpected {}", describe(&t))),
        };
        loop {
            match self.peek().clone() {
                Tok::Sym(".") => {
                    self.next();
                    let Tok::Name(n) = self.next() else {
                        return Err("a name is expected after `.`".into());
                    };
                    e = Expr::Index(Box::new(e), Box::new(Expr::Const(Val::Str(n.into_bytes()))));
                }
                Tok::Sym("[") => {
                    self.next();
                    let k = self.expr(0)?;
                    self.expect("]")?;
                    e = Expr::Index(Box::new(e), Box::new(k));
                }
                Tok::Sym(":") => {
                    self.next();
                    let Tok::Name(n) = self.next() else {
                        return Err("a name is expected after `:`".into());
                    };
                    let args = self.args()?;
                    e = Expr::Method(Box::new(e), n.into_bytes(), args);
                }
                Tok::Sym("(") | Tok::Str(_) => {
                    let args = self.args()?;
                    e = Expr::Call(Box::new(e), args);
                }
                _ => return Ok(e),
            }
        }
    }

    fn args(&mut self) -> Result<Vec<Expr>, String> {
        if let Tok::Str(s) = self.peek().clone() {
            self.next();
            return Ok(vec![Expr::Const(Val::Str(s))]);
        }
        self.expect("(")?;
        let mut args = Vec::new();
        if self.sym(")") {
            self.next();
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            if self.sym(",") {
                self.next();
                continue;
            }
            self.expect(")")?;
            return Ok(args);
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Name(n) => format!("`{n}`"),
        Tok::Num(n) => format!("`{}`", fmt_num(*n)),
        Tok::Str(_) => "a string".into(),
        Tok::Sym(s) => format!("`{s}`"),
        Tok::Eof => "end of expression".into(),
    }
}

/// A global name as Kong's sandboxed template environment resolves it.
fn global(name: &str) -> Result<Expr, String> {
    if KEYWORDS.contains(&name) || ["and", "or", "not"].contains(&name) {
        return Err(format!("`{name}` is Lua syntax beyond a single expression"));
    }
    if SANDBOX_UNSUPPORTED.contains(&name) {
        return Err(format!("`{name}` is not evaluated by switchyard"));
    }
    Ok(Expr::Global(match name {
        "headers" => Global::Headers,
        "query_params" => Global::Query,
        "uri_captures" => Global::Captures,
        "string" => Global::StringLib,
        "type" => Global::Type,
        "tostring" => Global::ToString,
        "tonumber" => Global::ToNumber,
        _ => Global::Missing,
    }))
}

// === evaluation ===

struct Eval<'e, 's> {
    env: &'e mut Env,
    src: &'e Source<'s>,
}

/// The largest string `string.rep` makes.
const MAX_REP: usize = 1 << 20;

impl Expr {
    fn eval(&self, cx: &mut Eval<'_, '_>) -> Result<Val, String> {
        Ok(match self {
            Expr::Const(v) => v.clone(),
            Expr::Global(g) => match g {
                Global::Headers => Val::Table(Table::Headers),
                Global::Query => Val::Table(Table::Query),
                Global::Captures => Val::Table(Table::Captures),
                Global::StringLib => Val::Table(Table::StringLib),
                Global::Type => Val::Func(Func::Type),
                Global::ToString => Val::Func(Func::ToString),
                Global::ToNumber => Val::Func(Func::ToNumber),
                Global::Missing => Val::Nil,
            },
            Expr::Index(t, k) => {
                let t = t.eval(cx)?;
                let k = k.eval(cx)?;
                index(cx, &t, &k)?
            }
            Expr::Call(f, args) => {
                let f = f.eval(cx)?;
                let args = args
                    .iter()
                    .map(|a| a.eval(cx))
                    .collect::<Result<Vec<_>, _>>()?;
                call(&f, args)?
            }
            Expr::Method(t, name, args) => {
                let t = t.eval(cx)?;
                let f = index(cx, &t, &Val::Str(name.clone()))?;
                let mut all = vec![t];
                for a in args {
                    all.push(a.eval(cx)?);
                }
                call(&f, all)?
            }
            Expr::Unary(op, a) => {
                let a = a.eval(cx)?;
                match op {
                    UnOp::Not => Val::Bool(!a.truthy()),
                    UnOp::Neg => Val::Num(-arith_operand(&a)?),
                    UnOp::Len => match &a {
                        Val::Str(s) => Val::Num(s.len() as f64),
                        Val::Table(t) => Val::Num(table_len(cx, t) as f64),
                        v => {
                            return Err(format!(
                                "attempt to get length of a {} value",
                                v.type_name()
                            ));
                        }
                    },
                }
            }
            Expr::And(a, b) => {
                let a = a.eval(cx)?;
                if a.truthy() { b.eval(cx)? } else { a }
            }
            Expr::Or(a, b) => {
                let a = a.eval(cx)?;
                if a.truthy() { a } else { b.eval(cx)? }
            }
            Expr::Binary(op, a, b) => {
                let a = a.eval(cx)?;
                let b = b.eval(cx)?;
                binary(*op, a, b)?
            }
        })
    }
}

fn arith_operand(v: &Val) -> Result<f64, String> {
    v.to_num()
        .ok_or_else(|| format!("attempt to perform arithmetic on a {} value", v.type_name()))
}

fn binary(op: BinOp, a: Val, b: Val) -> Result<Val, String> {
    Ok(match op {
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Pow => {
            let (x, y) = (arith_operand(&a)?, arith_operand(&b)?);
            Val::Num(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                BinOp::Mod => x - (x / y).floor() * y,
                _ => x.powf(y),
            })
        }
        BinOp::Concat => {
            let piece = |v: &Val| match v {
                Val::Str(s) => Ok(s.clone()),
                Val::Num(n) => Ok(fmt_num(*n).into_bytes()),
                v => Err(format!("attempt to concatenate a {} value", v.type_name())),
            };
            let mut s = piece(&a)?;
            s.extend_from_slice(&piece(&b)?);
            Val::Str(s)
        }
        BinOp::Eq => Val::Bool(a == b),
        BinOp::Ne => Val::Bool(a != b),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let ord = match (&a, &b) {
                (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
                (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
                _ => {
                    return Err(format!(
                        "attempt to compare {} with {}",
                        a.type_name(),
                        b.type_name()
                    ));
                }
            };
            use std::cmp::Ordering::*;
            Val::Bool(match (op, ord) {
                (_, None) => false,
                (BinOp::Lt, Some(o)) => o == Less,
                (BinOp::Le, Some(o)) => o != Greater,
                (BinOp::Gt, Some(o)) => o == Greater,
                (_, Some(o)) => o != Less,
            })
        }
    })
}

fn integral(v: &Val) -> Option<usize> {
    match v {
        Val::Num(n) if n.fract() == 0.0 && *n >= 0.0 => Some(*n as usize),
        _ => None,
    }
}

fn index(cx: &mut Eval<'_, '_>, t: &Val, k: &Val) -> Result<Val, String> {
    let table = match t {
        Val::Table(t) => t,
        Val::Str(_) => {
            // Strings index the string library.
            return Ok(match k {
                Val::Str(name) => StrFn::named(name).map_or(Val::Nil, |f| Val::Func(Func::Str(f))),
                _ => Val::Nil,
            });
        }
        v => return Err(format!("attempt to index a {} value", v.type_name())),
    };
    Ok(match table {
        Table::Headers => {
            let Val::Str(name) = k else {
                return Ok(Val::Nil);
            };
            let headers = cx.env.headers(cx.src);
            header_value(headers, name)
        }
        Table::Query => {
            let Val::Str(name) = k else {
                return Ok(Val::Nil);
            };
            let args = cx.env.query(cx.src);
            match args.get(name) {
                None => Val::Nil,
                Some(v) => arg_val(name, v),
            }
        }
        Table::Captures => {
            let Some(c) = cx.src.captures else {
                return Ok(Val::Nil);
            };
            let found = match k {
                Val::Str(name) => std::str::from_utf8(name).ok().and_then(|n| c.named(n)),
                k => integral(k).and_then(|i| c.get(i)),
            };
            found.map_or(Val::Nil, |s| Val::Str(s.as_bytes().to_vec()))
        }
        Table::StringLib => match k {
            Val::Str(name) => StrFn::named(name).map_or(Val::Nil, |f| Val::Func(Func::Str(f))),
            _ => Val::Nil,
        },
        Table::List { items, .. } => match integral(k) {
            Some(i) if i >= 1 => items.get(i - 1).cloned().unwrap_or(Val::Nil),
            _ => Val::Nil,
        },
    })
}

/// `headers[name]` on nginx's header table: the exact (lower-case) name, else the name
/// lower-cased with `_` as `-`; a repeated header is a list.
fn header_value(headers: &HeaderMap, name: &[u8]) -> Val {
    let lookup = |n: &[u8]| -> Option<Val> {
        let hn = http::HeaderName::from_bytes(n).ok()?;
        let mut values = headers.get_all(&hn).iter();
        let first = values.next()?;
        let rest: Vec<Val> = values.map(|v| Val::Str(v.as_bytes().to_vec())).collect();
        if rest.is_empty() {
            return Some(Val::Str(first.as_bytes().to_vec()));
        }
        let mut items = vec![Val::Str(first.as_bytes().to_vec())];
        items.extend(rest);
        Some(Val::Table(Table::List {
            origin: hn.as_str().as_bytes().to_vec(),
            items,
        }))
    };
    if !name.iter().any(u8::is_ascii_uppercase)
        && let Some(v) = lookup(name)
    {
        return v;
    }
    let normalized: Vec<u8> = name
        .iter()
        .map(|b| {
            if *b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect();
    lookup(&normalized).unwrap_or(Val::Nil)
}

fn arg_val(name: &[u8], v: &ArgValue) -> Val {
    match v {
        ArgValue::Text(t) => Val::Str(t.clone()),
        ArgValue::Flag => Val::Bool(true),
        ArgValue::List(items) => Val::Table(Table::List {
            origin: [b"?".as_slice(), name].concat(),
            items: items.iter().map(|i| arg_val(name, i)).collect(),
        }),
    }
}

fn table_len(cx: &mut Eval<'_, '_>, t: &Table) -> usize {
    match t {
        Table::List { items, .. } => items.len(),
        Table::Captures => cx
            .src
            .captures
            .map_or(0, |c| (1..).take_while(|&i| c.get(i).is_some()).count()),
        Table::Headers | Table::Query | Table::StringLib => 0,
    }
}

fn call(f: &Val, args: Vec<Val>) -> Result<Val, String> {
    let Val::Func(f) = f else {
        return Err(format!("attempt to call a {} value", f.type_name()));
    };
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Val::Nil);
    Ok(match f {
        Func::Type => {
            if args.is_empty() {
                return Err("bad argument #1 to 'type' (value expected)".into());
            }
            Val::Str(arg(0).type_name().as_bytes().to_vec())
        }
        Func::ToString => {
            if args.is_empty() {
                return Err("bad argument #1 to 'tostring' (value expected)".into());
            }
            Val::Str(arg(0).to_lua_string())
        }
        Func::ToNumber => match (arg(0), arg(1)) {
            (v, Val::Nil) => v.to_num().map_or(Val::Nil, Val::Num),
            (v, base) => {
                let base = base
                    .to_num()
                    .filter(|b| (2.0..=36.0).contains(b))
                    .ok_or("bad argument #2 to 'tonumber' (base out of range)")?;
                let s = match &v {
                    Val::Str(s) => String::from_utf8_lossy(s).trim().to_string(),
                    Val::Num(n) => fmt_num(*n),
                    v => {
                        return Err(format!(
                            "bad argument #1 to 'tonumber' (string expected, got {})",
                            v.type_name()
                        ));
                    }
                };
                i64::from_str_radix(&s, base as u32).map_or(Val::Nil, |n| Val::Num(n as f64))
            }
        },
        Func::Str(sf) => {
            let name = sf.name();
            let s = match arg(0) {
                Val::Str(s) => s,
                Val::Num(n) => fmt_num(n).into_bytes(),
                v => {
                    return Err(format!(
                        "bad argument #1 to '{name}' (string expected, got {})",
                        if matches!(v, Val::Nil) {
                            "no value"
                        } else {
                            v.type_name()
                        }
                    ));
                }
            };
            let int = |i: usize, default: Option<i64>| -> Result<i64, String> {
                match (arg(i), default) {
                    (Val::Nil, Some(d)) => Ok(d),
                    (v, _) => v.to_num().map(|n| n as i64).ok_or_else(|| {
                        format!(
                            "bad argument #{} to '{name}' (number expected, got {})",
                            i + 1,
                            v.type_name()
                        )
                    }),
                }
            };
            match sf {
                StrFn::Len => Val::Num(s.len() as f64),
                StrFn::Lower => Val::Str(s.to_ascii_lowercase()),
                StrFn::Upper => Val::Str(s.to_ascii_uppercase()),
                StrFn::Reverse => Val::Str(s.iter().rev().copied().collect()),
                StrFn::Sub => {
                    let len = s.len() as i64;
                    let mut start = int(1, Some(1))?;
                    let mut end = int(2, Some(-1))?;
                    if start < 0 {
                        start = (len + start + 1).max(0);
                    }
                    if end < 0 {
                        end = len + end + 1;
                    }
                    start = start.max(1);
                    end = end.min(len);
                    if start > end {
                        Val::Str(Vec::new())
                    } else {
                        Val::Str(s[(start - 1) as usize..end as usize].to_vec())
                    }
                }
                StrFn::Rep => {
                    let n = int(1, None)?;
                    let sep = match arg(2) {
                        Val::Nil => Vec::new(),
                        Val::Str(s) => s,
                        Val::Num(n) => fmt_num(n).into_bytes(),
                        v => {
                            return Err(format!(
                                "bad argument #3 to 'rep' (string expected, got {})",
                                v.type_name()
                            ));
                        }
                    };
                    if n <= 0 {
                        Val::Str(Vec::new())
                    } else {
                        let n = n as usize;
                        let total = s.len().saturating_add(sep.len()).saturating_mul(n);
                        if total > MAX_REP {
                            return Err("resulting string too large".into());
                        }
                        let mut out = Vec::with_capacity(total);
                        for i in 0..n {
                            if i > 0 {
                                out.extend_from_slice(&sep);
                            }
                            out.extend_from_slice(&s);
                        }
                        Val::Str(out)
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captures() -> UriCaptures<'static> {
        // `^/users/(?<user>\w+)/(\d+)?` on /users/ann/
        UriCaptures {
            text: "/users/ann/".into(),
            groups: vec![Some((0, 11)), Some((7, 10)), None],
            names: vec![("user", 1)],
        }
    }

    fn render_with(t: &str, headers: &HeaderMap, query: Option<&str>) -> Result<String, String> {
        let c = captures();
        let src = Source {
            headers,
            query,
            captures: Some(&c),
        };
        let t = Template::compile(t)?;
        t.render(&mut Env::default(), &src)
            .map(|v| String::from_utf8(v).unwrap())
    }

    fn render(t: &str) -> Result<String, String> {
        let mut h = HeaderMap::new();
        h.insert("host", "example.com".parse().unwrap());
        h.insert("x-id", "abc".parse().unwrap());
        h.append("x-foo", "1".parse().unwrap());
        h.append("x-foo", "2".parse().unwrap());
        render_with(t, &h, Some("q1=20&flag&multi=a&multi=b&sp=a+b%21"))
    }

    #[test]
    fn text_and_expressions() {
        assert_eq!(render("plain").unwrap(), "plain");
        assert_eq!(
            Template::compile("plain").unwrap().constant(),
            Some(&b"plain"[..])
        );
        assert_eq!(render("$(headers.host)").unwrap(), "example.com");
        assert_eq!(render("id=$(headers['x-id'])!").unwrap(), "id=abc!");
        assert_eq!(render("$(headers.x_id)").unwrap(), "abc");
        assert_eq!(render("$(headers[\"X-Id\"])").unwrap(), "abc");
        assert_eq!(render("$(headers.missing)").unwrap(), "");
        assert_eq!(render("$(query_params.q1)").unwrap(), "20");
        assert_eq!(render("$(query_params.flag)").unwrap(), "true");
        assert_eq!(render("$(query_params.sp)").unwrap(), "a b!");
        assert_eq!(render("$(query_params.multi[2])").unwrap(), "b");
        assert_eq!(render("/v2/$(uri_captures[1])").unwrap(), "/v2/ann");
        assert_eq!(render("$(uri_captures.user)").unwrap(), "ann");
        assert_eq!(render("$(uri_captures['user'])").unwrap(), "ann");
        assert_eq!(render("$(uri_captures[0])").unwrap(), "/users/ann/");
        assert_eq!(render("$(uri_captures[2])").unwrap(), "");
        assert_eq!(
            render("$(uri_captures.nope or 'default1')").unwrap(),
            "default1"
        );
        // An unbalanced `$(` is text; the escape Kong's spec uses renders the inner text.
        assert_eq!(render("$(a $(headers.x_id)").unwrap(), "$(a abc");
        assert_eq!(
            render("$('$(uri_captures.user1)')").unwrap(),
            "$(uri_captures.user1)"
        );
        assert_eq!(render("$ (x)").unwrap(), "$ (x)");
    }

    #[test]
    fn lua_semantics() {
        assert_eq!(
            render(r#"$(type(headers["X-Foo"]) == "table" and headers["X-Foo"][1] .. "-first" or headers["X-Foo"])"#)
                .unwrap(),
            "1-first"
        );
        assert_eq!(render("$(type(headers.host))").unwrap(), "string");
        assert_eq!(render("$(#headers['x-id'])").unwrap(), "3");
        assert_eq!(render("$(10 * query_params.q1)").unwrap(), "200");
        assert_eq!(render("$(query_params.q1 / 3)").unwrap(), "6.6666666666667");
        assert_eq!(render("$(2^53)").unwrap(), "9.007199254741e+15");
        assert_eq!(render("$(1e14)").unwrap(), "1e+14");
        assert_eq!(render("$(0.0001)").unwrap(), "0.0001");
        assert_eq!(render("$(1/0)").unwrap(), "inf");
        assert_eq!(render("$(7 % 3 .. '')").unwrap(), "1");
        assert_eq!(render("$(headers.host:upper())").unwrap(), "EXAMPLE.COM");
        assert_eq!(
            render("$(string.sub(headers.host, 1, 7))").unwrap(),
            "example"
        );
        assert_eq!(render("$(headers.host:sub(-3))").unwrap(), "com");
        assert_eq!(render("$(('ab'):rep(3, '-'))").unwrap(), "ab-ab-ab");
        assert_eq!(
            render("$(tostring(nil) .. tostring(1.5))").unwrap(),
            "nil1.5"
        );
        assert_eq!(
            render("$(tonumber('0x10') + tonumber(' 5 '))").unwrap(),
            "21"
        );
        assert_eq!(render("$(tonumber('ff', 16))").unwrap(), "255");
        assert_eq!(render("$(false)").unwrap(), "");
        assert_eq!(render("$(not nil)").unwrap(), "true");
        assert_eq!(render("$('a' < 'b')").unwrap(), "true");
        assert_eq!(render("$(\"tab\\there\")").unwrap(), "tab\there");
        assert_eq!(render("$([[long]])").unwrap(), "long");
        assert_eq!(render("$(1 + 2 * 3 ^ 2)").unwrap(), "19");
        assert_eq!(render("$(-2 ^ 2)").unwrap(), "-4");
        assert_eq!(render("$('a' .. 'b' .. 1)").unwrap(), "ab1");
    }

    #[test]
    fn runtime_errors_as_kong_raises_them() {
        // Kong's spec: `10 * uri_captures.user1` with user1 = "foo", an unknown function.
        assert_eq!(
            render("$(10 * uri_captures.user)").unwrap_err(),
            "attempt to perform arithmetic on a string value"
        );
        assert_eq!(
            render("$(ERROR())").unwrap_err(),
            "attempt to call a nil value"
        );
        assert_eq!(
            render("$(foo(headers['User-Agent']))").unwrap_err(),
            "attempt to call a nil value"
        );
        assert_eq!(
            render("$(headers.missing.x)").unwrap_err(),
            "attempt to index a nil value"
        );
        assert_eq!(
            render("$(nil .. 'x')").unwrap_err(),
            "attempt to concatenate a nil value"
        );
        assert!(
            render("$(1 < 'x')")
                .unwrap_err()
                .starts_with("attempt to compare")
        );
    }

    #[test]
    fn what_is_not_evaluated_does_not_compile() {
        for t in [
            "$(shared.my_version)",
            "$(shared.written = true)",
            "$(string.format('%s', headers.host))",
            "$(headers.host:gsub('a', 'b'))",
            "$(require('inspect')(query_params))",
            "$(kong.request.get_path())",
            "$(ngx.var.remote_addr)",
            "$(math.floor(1.5))",
            "$(function() end)",
            "$({1, 2})",
            "$(a, b)",
            "$()",
            "$(headers.x -- comment)",
            "$(string[headers.x])",
        ] {
            assert!(Template::compile(t).is_err(), "{t} compiled");
        }
        // A name the sandbox does not have is nil, not an error at compile time.
        assert!(Template::compile("$(foo(1))").is_ok());
        assert!(Template::compile("$(string.nope)").is_ok());
    }

    #[test]
    fn tables_load_once_per_request() {
        let mut h = HeaderMap::new();
        h.insert("x-a", "before".parse().unwrap());
        let t = Template::compile("$(headers['x-a'])").unwrap();
        assert!(t.reads_headers());
        let mut env = Env::default();
        let src = Source {
            headers: &h,
            query: Some("a=1"),
            captures: None,
        };
        assert_eq!(t.render(&mut env, &src).unwrap(), b"before");
        let mut h2 = HeaderMap::new();
        h2.insert("x-a", "after".parse().unwrap());
        let src = Source {
            headers: &h2,
            query: Some("a=2"),
            captures: None,
        };
        assert_eq!(t.render(&mut env, &src).unwrap(), b"before");
        assert_eq!(
            env.query(&src).get(b"a"),
            Some(&ArgValue::Text(b"2".to_vec()))
        );
        // No captures: nil.
        let t = Template::compile("$(uri_captures[1] or 'none')").unwrap();
        assert_eq!(t.render(&mut env, &src).unwrap(), b"none");
    }
}
