//! The proxy-wasm host calls the filter makes, called through the raw ABI
//! so that every status the host can return is handled: the SDK's own
//! wrappers panic on an unexpected status, and a panic traps the VM
//! (docs/decisions.md#no-panic-on-the-request-path). The one exception is
//! the HTTP callout, which must go through the SDK so that its dispatcher
//! routes the answer (see `dispatch` in `lib.rs`).

use std::ptr::{null, null_mut};

const OK: u32 = 0;
const CAS_MISMATCH: u32 = 8;

pub const REQUEST_HEADERS: u32 = 0;
pub const CALL_RESPONSE_HEADERS: u32 = 6;
pub const CALL_RESPONSE_BODY: u32 = 4;
const HTTP_REQUEST_STREAM: u32 = 0;
pub const PLUGIN_CONFIGURATION: u32 = 7;
pub const LOG_CRITICAL: u32 = 5;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        value: *mut *mut u8,
        value_len: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, len: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_len: usize) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_len: usize,
        value: *mut *mut u8,
        value_len: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_len: usize,
        value: *mut *mut u8,
        value_len: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
        cas: u32,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max: usize,
        data: *mut *mut u8,
        len: *mut usize,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_len: usize,
        body: *const u8,
        body_len: usize,
        headers: *const u8,
        headers_len: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_set_effective_context(context: u32) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_len: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_log(level: u32, message: *const u8, message_len: usize) -> u32;
}

// The one WASI call the filter makes: proxy-wasm hosts provide WASI's
// `random_get` to every module (the proxy-wasm ABI has no call of its own
// for random bytes).
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u16;
}

/// Takes ownership of a buffer the host allocated through this module's
/// allocator (`proxy_on_memory_allocate`); an empty value may come as null.
///
/// # Safety
/// `data` and `len` must be what the host returned with an OK status.
unsafe fn owned(data: *mut u8, len: usize) -> Vec<u8> {
    if data.is_null() || len == 0 {
        if !data.is_null() {
            // SAFETY: the host allocated `data` for zero bytes; free it.
            drop(unsafe { Vec::from_raw_parts(data, 0, 0) });
        }
        return Vec::new();
    }
    // SAFETY: the host allocated exactly `len` bytes at `data` for us.
    unsafe { Vec::from_raw_parts(data, len, len) }
}

pub fn now_ns() -> u64 {
    let mut t = 0u64;
    // SAFETY: a valid pointer to a u64 for the call.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    if status == OK {
        t
    } else {
        0
    }
}

pub fn header(map: u32, name: &str) -> Option<Vec<u8>> {
    let (mut data, mut len) = (null_mut(), 0usize);
    // SAFETY: pointers to live locals and a live string for the call.
    let status =
        unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut len) };
    // SAFETY: with OK the host handed over the buffer.
    (status == OK).then(|| unsafe { owned(data, len) })
}

/// Every header of a map, decoded from proxy-wasm's map encoding (count,
/// (key length, value length) pairs, then each key and value followed by
/// a NUL byte). Names that are not UTF-8 are left out.
pub fn headers(map: u32) -> Vec<(String, Vec<u8>)> {
    let (mut data, mut len) = (null_mut(), 0usize);
    // SAFETY: pointers to live locals for the call.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut len) };
    if status != OK {
        return Vec::new();
    }
    // SAFETY: with OK the host handed over the buffer.
    let bytes = unsafe { owned(data, len) };
    decode_pairs(&bytes).unwrap_or_default()
}

fn decode_pairs(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        sizes.push((u32_at(4 + i * 8)?, u32_at(8 + i * 8)?));
    }
    let mut at = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut out = Vec::with_capacity(sizes.len());
    for (k, v) in sizes {
        let key = bytes.get(at..at.checked_add(k)?)?;
        at = at.checked_add(k)?.checked_add(1)?;
        let value = bytes.get(at..at.checked_add(v)?)?;
        at = at.checked_add(v)?.checked_add(1)?;
        if let Ok(key) = std::str::from_utf8(key) {
            out.push((key.to_string(), value.to_vec()));
        }
    }
    Some(out)
}

pub fn replace_header(map: u32, name: &str, value: &[u8]) -> bool {
    // SAFETY: pointers and lengths describe live slices for the call.
    unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
            == OK
    }
}

pub fn add_header(map: u32, name: &str, value: &[u8]) -> bool {
    // SAFETY: pointers and lengths describe live slices for the call.
    unsafe {
        proxy_add_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
            == OK
    }
}

pub fn remove_header(map: u32, name: &str) {
    // SAFETY: pointer and length describe a live string for the call.
    let _ = unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) };
}

pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let path = path.join("\0");
    let (mut data, mut len) = (null_mut(), 0usize);
    // SAFETY: pointers to live locals and a live string for the call.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut len) };
    // SAFETY: with OK the host handed over the buffer.
    (status == OK).then(|| unsafe { owned(data, len) })
}

/// Writes filter state `wasm.<key>` (a one-segment property path).
pub fn set_property(key: &[u8], value: &[u8]) -> bool {
    // SAFETY: pointers and lengths describe live slices for the call.
    unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) == OK }
}

pub fn shared_data(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    let (mut data, mut len, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: pointers to live locals and a live string for the call.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut len, &mut cas) };
    if status != OK {
        return (None, None);
    }
    // SAFETY: with OK the host handed over the buffer.
    let value = (!data.is_null()).then(|| unsafe { owned(data, len) });
    (value, (cas != 0).then_some(cas))
}

/// `Ok(true)` written, `Ok(false)` a CAS mismatch, `Err(())` another failure.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, ()> {
    // SAFETY: pointers and lengths describe live slices for the call.
    let status = unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    };
    match status {
        OK => Ok(true),
        CAS_MISMATCH => Ok(false),
        _ => Err(()),
    }
}

pub fn buffer(buffer: u32, size: usize) -> Vec<u8> {
    let (mut data, mut len) = (null_mut(), 0usize);
    // SAFETY: pointers to live locals for the call.
    let status = unsafe { proxy_get_buffer_bytes(buffer, 0, size, &mut data, &mut len) };
    if status == OK {
        // SAFETY: with OK the host handed over the buffer.
        unsafe { owned(data, len) }
    } else {
        Vec::new()
    }
}

pub fn send_local_response(status: u32, headers: &[(&str, &[u8])], body: &[u8]) -> bool {
    let headers = serialize(headers);
    // SAFETY: pointers and lengths describe live slices for the call.
    let result = unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    result == OK
}

pub fn resume_request() {
    // SAFETY: plain value.
    let _ = unsafe { proxy_continue_stream(HTTP_REQUEST_STREAM) };
}

pub fn set_effective_context(context: u32) {
    // SAFETY: plain value.
    let _ = unsafe { proxy_set_effective_context(context) };
}

pub fn set_tick_period(ms: u32) {
    // SAFETY: plain value.
    let _ = unsafe { proxy_set_tick_period_milliseconds(ms) };
}

pub fn define_metric(kind: u32, name: &str) -> Option<u32> {
    let mut id = 0;
    // SAFETY: pointers and lengths describe live data for the call.
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (status == OK).then_some(id)
}

pub fn increment_metric(id: u32, delta: i64) {
    // SAFETY: plain values.
    let _ = unsafe { proxy_increment_metric(id, delta) };
}

pub fn record_metric(id: u32, value: u64) {
    // SAFETY: plain values.
    let _ = unsafe { proxy_record_metric(id, value) };
}

/// Sixteen random bytes from the host, as two keys; `None` if it has none.
pub fn random_keys() -> Option<[u64; 2]> {
    let mut bytes = [0u8; 16];
    // SAFETY: the pointer and length describe `bytes`, writable for the call.
    let errno = unsafe { random_get(bytes.as_mut_ptr(), bytes.len()) };
    let (a, b) = bytes.split_at(8);
    match (errno, a.try_into(), b.try_into()) {
        (0, Ok(a), Ok(b)) => Some([u64::from_le_bytes(a), u64::from_le_bytes(b)]),
        _ => None,
    }
}

pub fn log(level: u32, message: &str) {
    // SAFETY: pointer and length describe a live string for the call.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// proxy-wasm's header map encoding (see [`decode_pairs`]).
fn serialize(headers: &[(&str, &[u8])]) -> Vec<u8> {
    let size: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (k, v) in headers {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}
