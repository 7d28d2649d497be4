//! Kong's typedefs (`kong/db/schema/typedefs.lua`), checked once for every plugin schema:
//! `host`, `sni`, `port`, `timeout`, `url`, `path`, `header_name`, `lua_code`, the elements
//! of `hosts` (a host with at most one wildcard label), with `kong.tools.ip.normalize_ip`
//! under the address ones; the `is_regex` validator; and what every string field of a Kong
//! schema has: a `len_min` of 1 unless it says otherwise, checked before the field's own
//! rule (`check_string`, `check_items`).
//!
//! A typedef checks every value it is given. Kong skips the checks of a field it declares
//! `referenceable` when the field holds a vault reference (`{vault://env/NAME}`), whose value
//! is only known at run time: the plugin files ask `is_reference` for those fields.

use std::fmt;

use indexmap::IndexMap;

use super::{Checks, join};

/// Kong's message for an empty string: a string field has `len_min = 1` unless it says
/// otherwise.
pub const EMPTY: &str = "length must be at least 1";

/// `typedefs.timeout`: milliseconds, up to 2^31 - 2.
pub const MAX_TIMEOUT: i64 = (1 << 31) - 2;

/// A vault reference (`kong.vault.is_reference`): `{vault://` ... `}`.
pub fn is_reference(value: &str) -> bool {
    value.starts_with("{vault://") && value.ends_with('}')
}

// === Strings ===

/// Kong's implicit `len_min = 1` of a string field (`None`: not set).
pub fn non_empty(c: &mut Checks, field: &str, value: Option<&str>) {
    if value == Some("") {
        c.error(field, EMPTY);
    }
}

/// The same for string fields of the record at `at` (empty: the top of `config`).
pub fn non_empty_fields(c: &mut Checks, at: &str, fields: &[(&str, Option<&str>)]) {
    for (name, value) in fields {
        non_empty(c, &join(at, name), *value);
    }
}

/// And for each string of a list (`at` is the list's path).
pub fn non_empty_items<S: AsRef<str>>(c: &mut Checks, at: &str, items: &[S]) {
    check_items(c, at, items, |_| Ok(()));
}

/// A string field with a rule of its own (`Err`: Kong's message). Kong runs the implicit
/// `len_min = 1` before a field's `match` or `custom_validator`, and stops at the first
/// failure, so an empty string gets only the length message.
pub fn check_string(
    c: &mut Checks,
    field: &str,
    value: &str,
    rule: impl FnOnce(&str) -> Result<(), String>,
) {
    if value.is_empty() {
        c.error(field, EMPTY);
    } else if let Err(e) = rule(value) {
        c.error(field, e);
    }
}

/// `check_string` for each string of a list (`at` is the list's path): Kong checks an
/// array's elements one by one, each problem at its index.
pub fn check_items<S: AsRef<str>>(
    c: &mut Checks,
    at: &str,
    items: &[S],
    rule: impl Fn(&str) -> Result<(), String>,
) {
    for (i, item) in items.iter().enumerate() {
        check_string(c, &format!("{at}[{i}]"), item.as_ref(), &rule);
    }
}

/// And for each value of a map of strings (`at` is the map's path).
pub fn non_empty_values(c: &mut Checks, at: &str, map: Option<&IndexMap<String, String>>) {
    for (key, value) in map.into_iter().flatten() {
        if value.is_empty() {
            c.error(&join(at, key), EMPTY);
        }
    }
}

// === Addresses (`kong/tools/ip.lua`) ===

/// What `normalize_ip` makes of an address (Kong's `hostname_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Ipv4,
    Ipv6,
    Name,
}

/// Why `normalize_ip` refused an address, in Kong's words: a port over 65535 is told apart
/// from the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrError {
    BadPort,
    Invalid(String),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::BadPort => f.write_str("invalid port number"),
            AddrError::Invalid(m) => f.write_str(m),
        }
    }
}

/// Kong's `normalize_ip`: an IPv4 address (`a.b.c.d[:port]`), an IPv6 address (bare, or in
/// brackets with an optional port) or a host name (`name[:port]`), told apart by
/// `hostname_type` (more than one colon: IPv6; digits and dots: IPv4; else a name), then
/// checked as that kind. The kind and the port, if there is one.
pub fn normalize_ip(address: &str) -> Result<(HostKind, Option<u16>), AddrError> {
    let port_of = |p: &str| -> Result<Option<u16>, AddrError> {
        match p.parse::<u64>() {
            Ok(n) if n <= 65535 => Ok(Some(n as u16)),
            // Lua's `tonumber` makes a huge number of any length of digits.
            _ => Err(AddrError::BadPort),
        }
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let colons = address.matches(':').count();
    let remainder: String = address.chars().filter(|c| *c != ':').collect();
    let kind = if colons > 1 {
        HostKind::Ipv6
    } else if !remainder.is_empty() && remainder.chars().all(|c| c.is_ascii_digit() || c == '.') {
        HostKind::Ipv4
    } else {
        HostKind::Name
    };
    match kind {
        // `normalize_ipv4`: `^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)(:%d+)?$`, each
        // number up to 255.
        HostKind::Ipv4 => {
            let bad = || AddrError::Invalid(format!("invalid ipv4 address: {address}"));
            let (ip, port) = match address.split_once(':') {
                Some((ip, port)) if !port.is_empty() => (ip, Some(port)),
                Some(_) => return Err(bad()),
                None => (address, None),
            };
            let octets: Vec<&str> = ip.split('.').collect();
            let valid = octets.len() == 4
                && octets.iter().all(|o| {
                    (1..=3).contains(&o.len()) && o.parse::<u16>().is_ok_and(|n| n <= 255)
                });
            if !valid {
                return Err(bad());
            }
            Ok((kind, port.map(port_of).transpose()?.flatten()))
        }
        // `normalize_ipv6`: `[addr]:port` (`%b[]`), `[addr]` or a bare address.
        HostKind::Ipv6 => {
            let (ip, port) = match address.strip_prefix('[').and_then(|a| a.split_once(']')) {
                Some((ip, "")) => (ip, None),
                Some((ip, rest)) => match rest.strip_prefix(':') {
                    Some(p) if digits(p) => (ip, port_of(p)?),
                    _ => return Err(AddrError::Invalid("invalid ipv6 address".to_string())),
                },
                None => (address, None),
            };
            if !is_ipv6(ip) {
                return Err(AddrError::Invalid(format!(
                    "invalid ipv6 address: {address}"
                )));
            }
            Ok((kind, port))
        }
        // `check_hostname`: `[%d%a%-%.%_]+` with an optional `:digits` port; no label ends
        // with `-`, and only the last (a fully qualified name's) may be empty.
        HostKind::Name => {
            let bad = || AddrError::Invalid(format!("invalid hostname: {address}"));
            let (name, port) = match address.rsplit_once(':') {
                Some((name, p)) if digits(p) => (name, port_of(p)?),
                _ => (address, None),
            };
            let chars_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !chars_ok {
                return Err(bad());
            }
            let labels: Vec<&str> = name.split('.').collect();
            let last = labels.len() - 1;
            if labels
                .iter()
                .enumerate()
                .any(|(i, l)| l.ends_with('-') || (l.is_empty() && i != last))
            {
                return Err(bad());
            }
            Ok((kind, port))
        }
    }
}

/// The address check of Kong's `normalize_ipv6`: a leading or trailing `:` gets a `0`, the
/// first `::` is expanded to the missing groups, and eight groups of one to four hex digits
/// must remain. (Unlike `std`'s parser, an IPv4 tail such as `::ffff:1.2.3.4` is refused.)
fn is_ipv6(address: &str) -> bool {
    let mut s = address.to_string();
    if s.starts_with(':') {
        s.insert(0, '0');
    }
    if s.ends_with(':') {
        s.push('0');
    }
    if s.contains("::") {
        let count = s.matches(':').count();
        let fill = format!(":{}", "0:".repeat(8usize.saturating_sub(count)));
        s = s.replacen("::", &fill, 1);
    }
    let groups: Vec<&str> = s.split(':').collect();
    groups.len() == 8
        && groups
            .iter()
            .all(|g| (1..=4).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Kong's `validate_host`: what is wrong with `host` as a host name or an IP address without
/// a port.
pub fn host_problem(host: &str) -> Result<(), String> {
    match normalize_ip(host) {
        Err(AddrError::Invalid(_)) => Err(format!("invalid value: {host}")),
        Err(AddrError::BadPort) | Ok((_, Some(_))) => Err("must not have a port".to_string()),
        Ok(_) => Ok(()),
    }
}

/// Kong's `typedefs.host`: a host name or an IP address, without a port.
pub fn check_host(c: &mut Checks, field: &str, host: &str) {
    check_string(c, field, host, host_problem);
}

/// Kong's `typedefs.sni` (`validate_sni`): a host name (not an IP address), without a port.
pub fn check_sni(c: &mut Checks, field: &str, sni: &str) {
    if sni.is_empty() {
        return c.error(field, EMPTY);
    }
    match normalize_ip(sni) {
        Err(AddrError::Invalid(_)) => c.error(field, format!("invalid value: {sni}")),
        Ok((kind, _)) if kind != HostKind::Name => c.error(field, "must not be an IP"),
        Err(AddrError::BadPort) | Ok((_, Some(_))) => c.error(field, "must not have a port"),
        Ok(_) => {}
    }
}

/// An element of Kong's `typedefs.hosts` (a route's `hosts`, acme's `domains`): a host with
/// an optional port and at most one wildcard, as the leftmost or rightmost label (its
/// `match_all` and `match_any`, then `validate_host_with_wildcards`). Not Kong's
/// `typedefs.wildcard_host`.
pub fn check_wildcard_host(c: &mut Checks, field: &str, host: &str) {
    if host.is_empty() {
        c.error(field, EMPTY);
    } else if host.matches('*').count() > 1 {
        c.error(field, "invalid wildcard: must have at most one wildcard");
    } else if host.contains('*') && !host.starts_with("*.") && !host.ends_with(".*") {
        c.error(
            field,
            "invalid wildcard: must be placed at leftmost or rightmost label",
        );
    } else if let Err(e) = normalize_ip(&host.replace('*', "abc")) {
        c.error(field, e.to_string());
    }
}

/// Kong's `typedefs.port`.
pub fn check_port(c: &mut Checks, field: &str, port: i64) {
    c.between(field, port, 0, 65535);
}

/// Kong's `typedefs.timeout` (milliseconds).
pub fn check_timeout(c: &mut Checks, field: &str, timeout: i64) {
    c.between(field, timeout, 0, MAX_TIMEOUT);
}

// === URLs and paths ===

/// What LuaSocket's `url.parse` finds in a URL (the parts Kong's checks look at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub scheme: Option<&'a str>,
    pub userinfo: Option<&'a str>,
    pub host: Option<&'a str>,
}

/// LuaSocket's `url.parse` (3.0, Kong's): the fragment goes, then `scheme:`
/// (`^([%w][%w%+%-%.]*)%:`), then `//authority` (up to the next `/`), whose `userinfo@` and
/// `:port` are split off what is left, the host (unbracketed when it is `[IPv6]`). `None` for
/// an empty string, which it refuses.
pub fn url_parts(url: &str) -> Option<UrlParts<'_>> {
    if url.is_empty() {
        return None;
    }
    let mut rest = url.split('#').next().unwrap_or_default();
    let mut parts = UrlParts {
        scheme: None,
        userinfo: None,
        host: None,
    };
    let bytes = rest.as_bytes();
    if bytes.first().is_some_and(u8::is_ascii_alphanumeric) {
        let end = bytes
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || b"+-.".contains(b)))
            .unwrap_or(bytes.len());
        if bytes.get(end) == Some(&b':') {
            parts.scheme = Some(&rest[..end]);
            rest = &rest[end + 1..];
        }
    }
    if let Some(after) = rest.strip_prefix("//") {
        let mut authority = &after[..after.find('/').unwrap_or(after.len())];
        if let Some((userinfo, host)) = authority.split_once('@') {
            parts.userinfo = Some(userinfo);
            authority = host;
        }
        if let Some(colon) = authority.rfind(':')
            && !authority[colon + 1..].contains(']')
        {
            authority = &authority[..colon];
        }
        if !authority.is_empty() {
            let unbracketed = authority
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .filter(|a| !a.is_empty());
            parts.host = Some(unbracketed.unwrap_or(authority));
        }
    }
    Some(parts)
}

/// Kong's `validate_url` (after the `len_min`): what is wrong with `url` as a URL, for which
/// LuaSocket must find a host and a scheme.
pub fn url_problem(url: &str) -> Result<(), &'static str> {
    match url_parts(url) {
        None => Err(EMPTY),
        Some(u) if u.host.is_none() => Err("missing host in url"),
        Some(u) if u.scheme.is_none() => Err("missing scheme in url"),
        Some(_) => Ok(()),
    }
}

/// Kong's `typedefs.url`.
pub fn check_url(c: &mut Checks, field: &str, url: &str) {
    if let Err(e) = url_problem(url) {
        c.error(field, e);
    }
}

/// Kong's `typedefs.path`: `starts_with = "/"`, no empty segments (`match_none`), then
/// `validate_path`: only RFC 3986 characters, and `%` only as `%XX`.
pub fn check_path(c: &mut Checks, field: &str, path: &str) {
    if path.is_empty() {
        return c.error(field, EMPTY);
    }
    if !path.starts_with('/') {
        return c.error(field, "should start with: /");
    }
    if path.contains("//") {
        return c.error(field, "must not have empty segments");
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._-~/%:@!$&'()*+,;=".contains(&b);
    if !path.bytes().all(allowed) {
        return c.error(
            field,
            format!(
                "invalid path: '{path}' (characters outside of the reserved list of RFC 3986 found)"
            ),
        );
    }
    // Kong replaces each `%XX` by `___`, then shows the first `%` left with up to two bytes
    // after it.
    let mut raw = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find('%') {
        raw.push_str(&rest[..i]);
        let escape = rest.as_bytes().get(i + 1..i + 3);
        if escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
            raw.push_str("___");
            rest = &rest[i + 3..];
        } else {
            raw.push('%');
            rest = &rest[i + 1..];
        }
    }
    raw.push_str(rest);
    if let Some(i) = raw.find('%') {
        let bad: String = raw[i..].chars().take(3).collect();
        c.error(field, format!("invalid url-encoded value: '{bad}'"));
    }
}

// === Headers and Lua ===

/// Kong's `validate_header_name` (`kong/tools/http.lua`): `^[a-zA-Z0-9-_]+$`.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Kong's `validate_header_name` with its message: what is wrong with `name` as a header
/// name.
pub fn header_name_problem(name: &str) -> Result<(), String> {
    if is_header_name(name) {
        Ok(())
    } else {
        Err(format!(
            "bad header name '{name}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
        ))
    }
}

/// Kong's `is_regex` validator, which compiles with PCRE: what PCRE has and Rust's `regex`
/// does not (look-around, backreferences) is accepted, the rest must compile.
pub fn is_regex(re: &str) -> bool {
    match regex::Regex::new(re) {
        Ok(_) => true,
        Err(e) => e.to_string().contains("not supported"),
    }
}

/// `is_regex` with Kong's message, which shows the value.
pub fn regex_problem(re: &str) -> Result<(), String> {
    if is_regex(re) {
        Ok(())
    } else {
        Err(format!("not a valid regex: {re}"))
    }
}

/// A map of header names (`typedefs.header_name`) to non-empty values (`at` is the map's
/// path).
pub fn check_headers(c: &mut Checks, at: &str, headers: Option<&IndexMap<String, String>>) {
    for name in headers.into_iter().flat_map(|h| h.keys()) {
        if name.is_empty() {
            c.error(at, EMPTY);
        } else {
            c.header_name(&join(at, name), name);
        }
    }
    non_empty_values(c, at, headers);
}

/// Kong's `typedefs.lua_code`: names and code must not be empty. (Kong also dry-runs the code
/// in its Lua sandbox; switchyard runs no Lua, so that part is not checked.)
pub fn check_lua_code(c: &mut Checks, field: &str, code: Option<&IndexMap<String, String>>) {
    for (name, lua) in code.into_iter().flatten() {
        if name.is_empty() {
            c.error(field, EMPTY);
        } else if lua.is_empty() {
            c.error(&join(field, name), EMPTY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::schema::problems;

    #[test]
    fn hosts() {
        for good in [
            "localhost",
            "logs-01.loggly.com",
            "example.com.",
            "10.0.0.1",
            "::1",
            "[::1]",
            "under_score",
        ] {
            assert_eq!(host_problem(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("example.com:80", "must not have a port"),
            ("10.0.0.1:80", "must not have a port"),
            ("[::1]:80", "must not have a port"),
            ("bad host", "invalid value: bad host"),
            ("a-.b", "invalid value: a-.b"),
            ("a..b", "invalid value: a..b"),
            ("300.1.1.1", "invalid value: 300.1.1.1"),
            ("1::2::3", "invalid value: 1::2::3"),
            ("", "invalid value: "),
        ] {
            assert_eq!(host_problem(bad), Err(why.to_string()), "{bad}");
        }
    }

    #[test]
    fn normalize_ip_as_kong() {
        use HostKind::*;
        for (address, want) in [
            ("1.2.3.4", Ok((Ipv4, None))),
            ("1.2.3.4:80", Ok((Ipv4, Some(80)))),
            ("::", Ok((Ipv6, None))),
            ("1:2:3:4:5:6:7::", Ok((Ipv6, None))),
            ("[fe80::1]:8080", Ok((Ipv6, Some(8080)))),
            ("example.com:65535", Ok((Name, Some(65535)))),
            ("-a.example.com", Ok((Name, None))),
            ("example.com:65536", Err(AddrError::BadPort)),
            ("1.2.3.4:99999999999999999999999", Err(AddrError::BadPort)),
            (
                "1.2.3.4:",
                Err(AddrError::Invalid("invalid ipv4 address: 1.2.3.4:".into())),
            ),
            (
                "::ffff:1.2.3.4",
                Err(AddrError::Invalid(
                    "invalid ipv6 address: ::ffff:1.2.3.4".into(),
                )),
            ),
            (
                "[::1]x",
                Err(AddrError::Invalid("invalid ipv6 address".into())),
            ),
            (
                "1:2:3:4:5:6:7:8:9",
                Err(AddrError::Invalid(
                    "invalid ipv6 address: 1:2:3:4:5:6:7:8:9".into(),
                )),
            ),
            ("a.:1", Ok((Name, Some(1)))),
            (".a", Err(AddrError::Invalid("invalid hostname: .a".into()))),
            ("", Err(AddrError::Invalid("invalid hostname: ".into()))),
        ] {
            assert_eq!(normalize_ip(address), want, "{address}");
        }
    }

    #[test]
    fn typedefs() {
        let mut c = Checks::default();
        check_sni(&mut c, "sni", "example.com");
        check_url(&mut c, "url", "https://[::1]:8443/x#frag");
        check_path(&mut c, "path", "/a%2Fb/~c");
        check_timeout(&mut c, "timeout", MAX_TIMEOUT);
        check_wildcard_host(&mut c, "wildcard", "*.example.com:8443");
        assert!(c.is_empty(), "{:?}", problems(c));

        let mut c = Checks::default();
        check_host(&mut c, "host", "");
        check_sni(&mut c, "sni", "10.0.0.1:80");
        check_sni(&mut c, "sni2", "example.com:99999");
        check_url(&mut c, "url", "");
        check_url(&mut c, "url2", "http://");
        check_path(&mut c, "path", "");
        check_path(&mut c, "path2", "/a%2%41");
        check_path(&mut c, "path3", "/a%");
        check_timeout(&mut c, "timeout", MAX_TIMEOUT + 1);
        check_wildcard_host(&mut c, "wildcard", "*");
        check_wildcard_host(&mut c, "wildcard2", "10.0.0.1:99999");
        assert_eq!(
            problems(c),
            [
                "host: length must be at least 1",
                "sni: must not be an IP",
                "sni2: must not have a port",
                "url: length must be at least 1",
                "url2: missing host in url",
                "path: length must be at least 1",
                "path2: invalid url-encoded value: '%2_'",
                "path3: invalid url-encoded value: '%'",
                "timeout: value should be between 0 and 2147483646",
                "wildcard: invalid wildcard: must be placed at leftmost or rightmost label",
                "wildcard2: invalid port number",
            ]
        );
    }

    #[test]
    fn header_names_and_references() {
        for good in ["X-Tenant", "x_b", "a", "0-9"] {
            assert!(is_header_name(good), "{good}");
        }
        // RFC 7230 tokens that Kong's stricter rule refuses.
        for bad in ["", "x.y", "x!", "x y", "x:y", "ä"] {
            assert!(!is_header_name(bad), "{bad}");
        }
        assert!(is_reference("{vault://env/x}"));
        assert!(!is_reference("{vault:/env/x}") && !is_reference("vault://env/x}"));
    }

    #[test]
    fn length_before_the_rule() {
        let mut c = Checks::default();
        check_items(&mut c, "names", &["ok", "", "x y"], header_name_problem);
        c.header_name("one", "");
        c.regex("re", "");
        c.regex("re2", "(?=look-ahead)");
        c.regex("re3", "[");
        assert_eq!(
            problems(c),
            [
                "names[1]: length must be at least 1",
                "names[2]: bad header name 'x y', allowed characters are A-Z, a-z, 0-9, '_', and '-'",
                "one: length must be at least 1",
                "re: length must be at least 1",
                "re3: not a valid regex: [",
            ]
        );
    }
}
