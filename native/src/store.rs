//! The process-wide key-value store behind the core's shared data (the
//! profile cache's slots, docs/native.md#the-cache): one structure for every
//! worker thread of the Envoy process, in 16 shards each behind a
//! read-write lock, with the compare-and-swap the core's cache rules are
//! written against. Bounded as the Wasm build's shared data is: the core
//! writes a fixed number of slot keys per configuration (`cache.max_entries`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::RwLock;

use oauthv2info_core::host::SharedWrite;

const SHARDS: usize = 16;

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    cas: u32,
}

#[derive(Debug)]
pub struct Store {
    shards: [RwLock<HashMap<String, Entry>>; SHARDS],
    next_cas: AtomicU32,
}

impl Default for Store {
    fn default() -> Store {
        Store {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
            next_cas: AtomicU32::new(1),
        }
    }
}

/// FNV-1a: picks the shard (the maps hash with their own random keys).
fn shard_of(key: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % SHARDS
}

impl Store {
    /// A value and its CAS; `(None, None)` when absent.
    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        let Some(shard) = self.shards.get(shard_of(key)) else {
            return (None, None);
        };
        // A writer that panicked left a whole map behind: still readable.
        let map = shard.read().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some(e) => (Some(e.value.clone()), Some(e.cas)),
            None => (None, None),
        }
    }

    /// Writes `value`; with `cas`, only if the entry is still the one read
    /// (as proxy-wasm's shared data: an absent entry takes any write).
    pub fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        let Some(shard) = self.shards.get(shard_of(key)) else {
            return SharedWrite::Failed;
        };
        let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
        let next = loop {
            let n = self.next_cas.fetch_add(1, Ordering::Relaxed);
            if n != 0 {
                break n;
            }
        };
        match map.get_mut(key) {
            Some(e) => {
                if cas.is_some_and(|c| c != 0 && c != e.cas) {
                    return SharedWrite::CasMismatch;
                }
                e.value.clear();
                e.value.extend_from_slice(value);
                e.cas = next;
            }
            None => {
                map.insert(
                    key.to_string(),
                    Entry {
                        value: value.to_vec(),
                        cas: next,
                    },
                );
            }
        }
        SharedWrite::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_guards_a_write_and_absent_keys_take_any() {
        let s = Store::default();
        assert_eq!(s.get("k"), (None, None));
        assert_eq!(s.set("k", b"one", Some(7)), SharedWrite::Ok);
        let (v, cas) = s.get("k");
        assert_eq!(v.as_deref(), Some(&b"one"[..]));
        let cas = cas.unwrap();
        assert_eq!(s.set("k", b"two", Some(cas)), SharedWrite::Ok);
        assert_eq!(s.set("k", b"three", Some(cas)), SharedWrite::CasMismatch);
        assert_eq!(s.get("k").0.as_deref(), Some(&b"two"[..]));
        assert_eq!(s.set("k", b"four", None), SharedWrite::Ok);
        assert_eq!(s.get("k").0.as_deref(), Some(&b"four"[..]));
    }

    #[test]
    fn threads_share_one_store() {
        let s = std::sync::Arc::new(Store::default());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        s.set(&format!("{t}-{i}"), &[t as u8], None);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.get("3-99").0, Some(vec![3]));
        assert_eq!(s.get("0-0").0, Some(vec![0]));
    }
}
