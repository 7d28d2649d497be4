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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut block = vec![0u8; ID_LEN * IDS_PER_BLOCK];
    for digits in block.chunks_mut(16) {
        let v = next_random();
        for (i, c) in digits.iter_mut().enumerate() {
            *c = HEX[((v >> (i * 4)) & 0xf) as usize];
        }
    }
    Bytes::from(block)
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
