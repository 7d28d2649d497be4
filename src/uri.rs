//! Request path normalisation as Kong does it before matching (`kong/tools/uri.lua`), and the
//! re-escaping of the upstream path. Both borrow when there is nothing to change, which is the
//! common case, so the hot path allocates nothing.

use std::borrow::Cow;

/// Characters whose percent-escapes stay escaped (RFC 3986 reserved, plus `%`).
fn is_reserved(b: u8) -> bool {
    b"!*'();:@&=+$,/?%#[]".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// True when `normalize_path` would return `p` unchanged.
pub fn is_normalized(p: &str) -> bool {
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if let (Some(h), Some(l)) = (
                    b.get(i + 1).and_then(|c| hex(*c)),
                    b.get(i + 2).and_then(|c| hex(*c)),
                ) {
                    let c = h * 16 + l;
                    if !is_reserved(c)
                        || b[i + 1].is_ascii_lowercase()
                        || b[i + 2].is_ascii_lowercase()
                    {
                        return false;
                    }
                }
                i += 3;
                continue;
            }
            b'/' => {
                let rest = &b[i + 1..];
                if rest.starts_with(b"/")
                    || rest == b"."
                    || rest == b".."
                    || rest.starts_with(b"./")
                    || rest.starts_with(b"../")
                {
                    return false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}

/// Decodes unreserved escapes, upper-cases reserved ones, removes dot segments and merges
/// repeated slashes.
pub fn normalize_path(p: &str) -> Cow<'_, str> {
    if is_normalized(p) {
        return Cow::Borrowed(p);
    }
    let b = p.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            let c = h * 16 + l;
            // Bytes that would not be UTF-8 on their own stay escaped.
            if is_reserved(c) || c >= 0x80 {
                decoded.push(b'%');
                decoded.push(b[i + 1].to_ascii_uppercase());
                decoded.push(b[i + 2].to_ascii_uppercase());
            } else {
                decoded.push(c);
            }
            i += 3;
            continue;
        }
        decoded.push(b[i]);
        i += 1;
    }
    let decoded = String::from_utf8(decoded).unwrap_or_else(|_| p.to_string());
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in decoded.split('/') {
        trailing = false;
        match seg {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                out.pop();
                trailing = true;
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(decoded.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing || out.is_empty() {
        s.push('/');
    }
    Cow::Owned(s)
}

fn keep_in_upstream_path(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!#$&'()*+,/:;=?@[]%".contains(&b)
}

/// Escapes what must not travel raw in a request line (space, `"`, non-ASCII, ...).
pub fn escape_upstream(p: &str) -> Cow<'_, str> {
    if p.bytes().all(keep_in_upstream_path) {
        return Cow::Borrowed(p);
    }
    let mut s = String::with_capacity(p.len() + 8);
    for b in p.bytes() {
        if keep_in_upstream_path(b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        for (input, want) in [
            ("/foo/bar", "/foo/bar"),
            ("/foo/a/../bar", "/foo/bar"),
            ("/foo/./bar", "/foo/bar"),
            ("/foo//bar", "/foo/bar"),
            ("/foo/bar//baz", "/foo/bar/baz"),
            ("/h%65llo", "/hello"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/foo/", "/foo/"),
            ("/%2E%2E/x", "/x"),
            ("/sp%20ace", "/sp ace"),
        ] {
            assert_eq!(normalize_path(input), want, "{input}");
            assert!(
                is_normalized(want) || want.contains(' '),
                "{want} should be normalized"
            );
        }
    }

    #[test]
    fn upstream_escaping() {
        assert_eq!(escape_upstream("/sp ace\"x~"), "/sp%20ace%22x~");
        assert!(matches!(escape_upstream("/a%2Fb"), Cow::Borrowed(_)));
    }
}
