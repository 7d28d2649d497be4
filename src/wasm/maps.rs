//! Header maps as the ABI carries them: little-endian u32 pair count, then each pair's key
//! and value lengths, then each key and value followed by a NUL.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Serialises `pseudo` pairs (`:method`, `:path`, ...; first, as Envoy and Kong put them)
/// and `headers`. Values that are not text are passed lossily: the Rust SDK's string APIs
/// trap on bytes that are not UTF-8.
pub fn serialize(pseudo: &[(&str, &str)], headers: &HeaderMap) -> Vec<u8> {
    let pairs: Vec<(&[u8], Cow<'_, str>)> = pseudo
        .iter()
        .map(|(k, v)| (k.as_bytes(), Cow::Borrowed(*v)))
        .chain(
            headers
                .iter()
                .map(|(k, v)| (k.as_str().as_bytes(), String::from_utf8_lossy(v.as_bytes()))),
        )
        .collect();
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in &pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in &pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// The pairs of a serialised map (`None`: malformed). An empty buffer, a single NUL and a
/// zero count are all the empty map.
pub fn deserialize(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.len() < 4 {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    if count > 1024 {
        return None;
    }
    let mut data = 4 + count * 8;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let (kl, vl) = (u32_at(4 + i * 8)?, u32_at(8 + i * 8)?);
        let key = bytes.get(data..data + kl)?;
        data += kl + 1;
        let value = bytes.get(data..data + vl)?;
        data += vl + 1;
        out.push((key, value));
    }
    Some(out)
}

/// A header name and value from a filter, when they are valid HTTP.
pub fn header(key: &[u8], value: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::from_bytes(key).ok()?,
        HeaderValue::from_bytes(value).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_matches_the_spec_example() {
        let mut h = HeaderMap::new();
        h.insert("b", HeaderValue::from_static("22"));
        // Not UTF-8: passed lossily, with the length of what is passed.
        let mut odd = HeaderMap::new();
        odd.insert("c", HeaderValue::from_bytes(b"\xff").unwrap());
        let pairs = serialize(&[], &odd);
        assert_eq!(
            deserialize(&pairs).unwrap(),
            vec![(&b"c"[..], "\u{fffd}".as_bytes())]
        );
        let bytes = serialize(&[("a", "1")], &h);
        let expected = [
            2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'1', 0, b'b', 0,
            b'2', b'2', 0,
        ];
        assert_eq!(bytes, expected);
        let pairs = deserialize(&bytes).unwrap();
        assert_eq!(pairs, vec![(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"22"[..])]);
        assert_eq!(deserialize(&[0, 0, 0, 0]).unwrap(), vec![]);
        assert_eq!(deserialize(&[0]).unwrap(), vec![]);
        assert!(deserialize(&[5, 0, 0, 0, 1]).is_none());
    }
}
