//! FNV-1a (64-bit): the hash for what must stay the same from run to run (derived entity
//! ids, the config's content hash), and for map keys that come from the configuration rather
//! than from clients, where SipHash's flood resistance buys nothing.

use std::hash::Hasher;

#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Fnv {
    pub const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

    pub const fn with_seed(seed: u64) -> Self {
        Fnv(seed)
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv(Self::OFFSET)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
