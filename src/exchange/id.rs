//! Request ids: 32 hex digits, made without locks. Ids are made 64 at a time into one buffer
//! per thread and each is a slice of it, held as the header value it goes out as: putting it
//! on both legs costs two reference counts, not two allocations and two validations.

use std::cell::{Cell, RefCell};

use bytes::Bytes;
use http::HeaderValue;

/// A request's id: unique enough to find the request in the logs.
#[derive(Clone, Debug)]
pub struct RequestId(HeaderValue);

const ID_LEN: usize = 32;
const IDS_PER_BLOCK: usize = 64;

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        let addr = &t as *const u64 as u64;
        (t ^ addr.rotate_left(32)) | 1
    });
    static IDS: RefCell<Bytes> = const { RefCell::new(Bytes::new()) };
}

fn next_random() -> u64 {
    RNG.with(|r| {
        // xorshift64*
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545F4914F6CDD1D)
    })
}

fn id_block() -> Bytes {
    let mut block = vec![0u8; ID_LEN * IDS_PER_BLOCK];
    for digits in block.chunks_exact_mut(16) {
        let v = next_random();
        digits[..8].copy_from_slice(&hex8(v as u32));
        digits[8..].copy_from_slice(&hex8((v >> 32) as u32));
    }
    Bytes::from(block)
}

/// The eight nibbles of `x` as lowercase hex digits, all at once in one u64 (a lookup per
/// digit was a fifth of a plugin-free request's own instructions).
fn hex8(x: u32) -> [u8; 8] {
    // Spread the nibbles into bytes: byte i holds nibble i.
    let mut v = u64::from(x);
    v = (v | (v << 16)) & 0x0000_ffff_0000_ffff;
    v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in each byte whose nibble is 10 or more: those become letters, not digits.
    let letters = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (v + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10)).to_le_bytes()
}

impl RequestId {
    pub fn new() -> Self {
        let id = IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            if ids.is_empty() {
                *ids = id_block();
            }
            ids.split_to(ID_LEN)
        });
        RequestId(HeaderValue::from_maybe_shared(id).unwrap_or(HeaderValue::from_static("0")))
    }
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
    pub fn header(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex8_gives_each_nibble_as_a_lowercase_digit() {
        for x in [0u32, 0x0123_4567, 0x89ab_cdef, u32::MAX, 0xa0f9_0a9f] {
            let want: Vec<u8> = (0..8)
                .map(|i| b"0123456789abcdef"[((x >> (i * 4)) & 0xf) as usize])
                .collect();
            assert_eq!(hex8(x).to_vec(), want, "{x:#x}");
        }
    }

    #[test]
    fn ids_are_32_hex_digits_and_differ() {
        let a = RequestId::new();
        let b = RequestId::new();
        assert_eq!(a.as_str().len(), 32);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a.as_str(), b.as_str());
    }
}
