//! The Envoy dynamic-module ABI (Envoy 1.40, ABI `v0.2.0`), as far as the
//! module uses it: the only module with `unsafe`. Written from Envoy's
//! `source/extensions/dynamic_modules/abi/abi.h` (docs/native.md#the-abi):
//! each callback is declared once and wrapped once in a safe function, and
//! each event hook Envoy looks up is exported here and hands safe types to
//! the adapter (`crate::hooks`), inside a panic guard (`crate::guard`).
//!
//! A [`Filter`] or [`Config`] handle is only ever made here, from what
//! Envoy passes to a hook; the adapter drops a filter's handle when Envoy
//! destroys the filter (docs/native.md#lifetimes).

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr::{null, null_mut};
use std::sync::Arc;

use crate::hooks;

/// The ABI version the module is built for (`on_program_init` returns it;
/// Envoy 1.40 logs "Dynamic module ABI version v0.2.0 matched.").
pub const ABI_VERSION: &str = "v0.2.0";
static ABI_VERSION_C: &[u8] = b"v0.2.0\0";

// ---------------------------------------------------------------- types

#[repr(C)]
#[derive(Clone, Copy)]
struct EnvoyBuffer {
    ptr: *const u8,
    length: usize,
}

impl EnvoyBuffer {
    const NULL: EnvoyBuffer = EnvoyBuffer {
        ptr: null(),
        length: 0,
    };

    /// The bytes Envoy lent (valid until the hook returns or a setter is
    /// called: copied at once).
    fn to_vec(self) -> Option<Vec<u8>> {
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: Envoy guarantees `length` bytes at `ptr` for the call.
        Some(unsafe { std::slice::from_raw_parts(self.ptr, self.length) }.to_vec())
    }

    fn as_slice<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            return &[];
        }
        // SAFETY: as above; the slice does not outlive the hook.
        unsafe { std::slice::from_raw_parts(self.ptr, self.length) }
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleBuffer {
    ptr: *const u8,
    length: usize,
}

fn buf(bytes: &[u8]) -> ModuleBuffer {
    ModuleBuffer {
        ptr: bytes.as_ptr(),
        length: bytes.len(),
    }
}

/// `envoy_dynamic_module_type_module_http_header` and
/// `envoy_dynamic_module_type_module_key_value_pair` (same layout).
#[repr(C)]
#[derive(Clone, Copy)]
struct ModulePair {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

fn pair(key: &[u8], value: &[u8]) -> ModulePair {
    ModulePair {
        key_ptr: key.as_ptr(),
        key_length: key.len(),
        value_ptr: value.as_ptr(),
        value_length: value.len(),
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
struct EnvoyHeader {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

const HEADER_TYPE_REQUEST: u32 = 0;
const METADATA_SOURCE_DYNAMIC: u32 = 0;
/// `envoy_dynamic_module_type_attribute_id_SourceAddress`.
pub const ATTRIBUTE_SOURCE_ADDRESS: u32 = 24;
const CALLOUT_INIT_SUCCESS: u32 = 0;
const CALLOUT_RESULT_SUCCESS: u32 = 0;
const METRICS_SUCCESS: u32 = 0;
const REQUEST_HEADERS_CONTINUE: u32 = 0;
const REQUEST_HEADERS_STOP_ITERATION: u32 = 1;
const CONTINUE: u32 = 0;
const REQUEST_BODY_STOP_ITERATION_AND_BUFFER: u32 = 1;
const REQUEST_TRAILERS_STOP_ITERATION: u32 = 1;

/// Log levels (`envoy_dynamic_module_type_log_level`).
pub const LOG_TRACE: u32 = 0;
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;
pub const LOG_CRITICAL: u32 = 5;

type FilterEnvoyPtr = *mut c_void;
type FilterModulePtr = *const c_void;
type ConfigEnvoyPtr = *mut c_void;
type ConfigModulePtr = *const c_void;

// ------------------------------------------------------------ callbacks

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    fn envoy_dynamic_module_callback_http_get_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result: *mut EnvoyHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers: *const ModulePair,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
        filter: FilterEnvoyPtr,
        ns: ModuleBuffer,
        entries: *const ModulePair,
        entries_size: usize,
    );
    fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter: FilterEnvoyPtr,
        source: u32,
        ns: ModuleBuffer,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: FilterEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *const ModulePair,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);
    fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter: FilterEnvoyPtr,
    ) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: *mut c_void);

    fn envoy_dynamic_module_callback_is_validation_mode() -> bool;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: ConfigEnvoyPtr,
    ) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: *mut c_void);
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: ConfigEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *const ModulePair,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_gauge(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

// ------------------------------------------------------ safe wrappers

/// Logs through Envoy's logger (the `dynamic_modules` component).
pub fn log(level: u32, message: &str) {
    // SAFETY: the buffer is read during the call only.
    unsafe { envoy_dynamic_module_callback_log(level, buf(message.as_bytes())) }
}

pub fn log_enabled(level: u32) -> bool {
    // SAFETY: no pointers.
    unsafe { envoy_dynamic_module_callback_log_enabled(level) }
}

/// One stream's filter in Envoy: valid from `on_http_filter_new` until
/// `on_http_filter_destroy` (the adapter forgets it then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter(FilterEnvoyPtr);

impl Filter {
    /// A scheduler of this filter (on its worker thread, while it lives).
    pub fn scheduler(self) -> Option<FilterScheduler> {
        // SAFETY: a live filter.
        let s = unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.0) };
        (!s.is_null()).then_some(FilterScheduler(s))
    }

    /// A request header's first value.
    pub fn request_header(self, name: &str) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::NULL;
        // SAFETY: a live filter; `out` is written by Envoy.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.0,
                HEADER_TYPE_REQUEST,
                buf(name.as_bytes()),
                &mut out,
                0,
                null_mut(),
            )
        };
        if !ok {
            return None;
        }
        out.to_vec()
    }

    /// Every request header, in order.
    pub fn request_headers(self) -> Vec<(String, Vec<u8>)> {
        // SAFETY: a live filter.
        let n = unsafe {
            envoy_dynamic_module_callback_http_get_headers_size(self.0, HEADER_TYPE_REQUEST)
        };
        if n == 0 {
            return Vec::new();
        }
        let mut raw = vec![
            EnvoyHeader {
                key_ptr: null(),
                key_length: 0,
                value_ptr: null(),
                value_length: 0,
            };
            n
        ];
        // SAFETY: `raw` holds the `n` entries Envoy announced.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_headers(
                self.0,
                HEADER_TYPE_REQUEST,
                raw.as_mut_ptr(),
            )
        };
        if !ok {
            return Vec::new();
        }
        raw.iter()
            .map(|h| {
                let key = EnvoyBuffer {
                    ptr: h.key_ptr,
                    length: h.key_length,
                };
                let value = EnvoyBuffer {
                    ptr: h.value_ptr,
                    length: h.value_length,
                };
                (
                    String::from_utf8_lossy(key.as_slice()).into_owned(),
                    value.as_slice().to_vec(),
                )
            })
            .collect()
    }

    /// Sets a request header (every copy replaced); `None` removes it.
    pub fn set_request_header(self, name: &str, value: Option<&[u8]>) -> bool {
        let value = match value {
            Some(v) => buf(v),
            None => ModuleBuffer {
                ptr: null(),
                length: 0,
            },
        };
        // SAFETY: a live filter; buffers read during the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                HEADER_TYPE_REQUEST,
                buf(name.as_bytes()),
                value,
            )
        }
    }

    pub fn add_request_header(self, name: &str, value: &[u8]) -> bool {
        // SAFETY: a live filter; buffers read during the call.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.0,
                HEADER_TYPE_REQUEST,
                buf(name.as_bytes()),
                buf(value),
            )
        }
    }

    /// A local reply (the stream may end inside this call).
    pub fn send_response(self, status: u32, headers: &[(&str, &[u8])], body: &[u8], details: &str) {
        let pairs: Vec<ModulePair> = headers.iter().map(|(k, v)| pair(k.as_bytes(), v)).collect();
        // SAFETY: a live filter; every buffer outlives the call.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                status,
                pairs.as_ptr(),
                pairs.len(),
                buf(body),
                buf(details.as_bytes()),
            )
        }
    }

    /// Dynamic metadata `ns`: every entry in one call.
    pub fn set_metadata_strings(self, ns: &str, entries: &[(&[u8], &[u8])]) {
        if entries.is_empty() {
            return;
        }
        let pairs: Vec<ModulePair> = entries.iter().map(|(k, v)| pair(k, v)).collect();
        // SAFETY: a live filter; every buffer outlives the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
                self.0,
                buf(ns.as_bytes()),
                pairs.as_ptr(),
                pairs.len(),
            )
        }
    }

    /// A string of the stream's dynamic metadata.
    pub fn metadata_string(self, ns: &str, key: &str) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::NULL;
        // SAFETY: a live filter; `out` is written by Envoy.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_metadata_string(
                self.0,
                METADATA_SOURCE_DYNAMIC,
                buf(ns.as_bytes()),
                buf(key.as_bytes()),
                &mut out,
            )
        };
        if !ok {
            return None;
        }
        Some(out.to_vec().unwrap_or_default())
    }

    pub fn set_filter_state(self, key: &[u8], value: &[u8]) -> bool {
        // SAFETY: a live filter; buffers read during the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_filter_state_bytes(self.0, buf(key), buf(value))
        }
    }

    /// A string attribute (`ATTRIBUTE_*`).
    pub fn attribute_string(self, id: u32) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::NULL;
        // SAFETY: a live filter; `out` is written by Envoy.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(self.0, id, &mut out)
        };
        if !ok {
            return None;
        }
        out.to_vec()
    }

    /// Sends an HTTP callout from this stream's filter; its id, or the
    /// init result Envoy refused it with.
    pub fn http_callout(
        self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let pairs: Vec<ModulePair> = headers
            .iter()
            .map(|(k, v)| pair(k.as_bytes(), v.as_bytes()))
            .collect();
        let mut id = 0u64;
        // SAFETY: a live filter; every buffer outlives the call.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.0,
                &mut id,
                buf(cluster.as_bytes()),
                pairs.as_ptr(),
                pairs.len(),
                buf(body),
                timeout_ms,
            )
        };
        if result == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }

    pub fn continue_decoding(self) {
        // SAFETY: a live filter.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }
}

/// The filter configuration in Envoy: lives as long as the module's
/// configuration (Envoy destroys it after `on_http_filter_config_destroy`,
/// and after every filter made from it).
#[derive(Debug, Clone, Copy)]
pub struct Config(ConfigEnvoyPtr);

// SAFETY: Envoy's metric callbacks on the configuration may be called from
// any thread (abi.h: "can be called outside of the request lifecycle").
unsafe impl Send for Config {}
// SAFETY: as above.
unsafe impl Sync for Config {}

/// True under `envoy --mode validate` (main thread).
pub fn is_validation_mode() -> bool {
    // SAFETY: no arguments.
    unsafe { envoy_dynamic_module_callback_is_validation_mode() }
}

/// The configuration's scheduler: `commit` (from any thread) runs
/// `on_http_filter_config_scheduled` on the main thread.
#[derive(Debug)]
pub struct ConfigScheduler(*mut c_void);

// SAFETY: abi.h: the configuration scheduler dispatches to the main thread
// "from any thread".
unsafe impl Send for ConfigScheduler {}
// SAFETY: as above.
unsafe impl Sync for ConfigScheduler {}

impl ConfigScheduler {
    pub fn commit(&self, event: u64) {
        // SAFETY: not deleted yet (`delete` takes it by value).
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event) }
    }

    pub fn delete(self) {
        // SAFETY: deleted once, here.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

/// A filter's scheduler: `commit` (from any thread) runs
/// `on_http_filter_scheduled` on the filter's worker thread, unless the
/// filter is gone by then (Envoy holds it by a weak pointer and drops the
/// event). Deleted when dropped.
#[derive(Debug)]
pub struct FilterScheduler(*mut c_void);

// SAFETY: abi.h: the filter scheduler posts to the filter's worker thread
// from another thread (its Envoy object holds a weak pointer to the filter
// and the worker's dispatcher, both safe to use from any thread).
unsafe impl Send for FilterScheduler {}

impl FilterScheduler {
    pub fn commit(&self, event: u64) {
        // SAFETY: not deleted yet (deleted only on drop).
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0, event) }
    }
}

impl Drop for FilterScheduler {
    fn drop(&mut self) {
        // SAFETY: made by `Filter::scheduler`, deleted once, here.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0) }
    }
}

/// A metric kind of the configuration's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Counter,
    Gauge,
    Histogram,
}

impl Config {
    /// The configuration's scheduler (main thread).
    pub fn scheduler(self) -> Option<ConfigScheduler> {
        // SAFETY: the configuration is live.
        let s = unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) };
        (!s.is_null()).then_some(ConfigScheduler(s))
    }

    /// An HTTP callout of the configuration (main thread), answered in
    /// `on_http_filter_config_http_callout_done`; its id, or the init result.
    pub fn http_callout(
        self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let pairs: Vec<ModulePair> = headers
            .iter()
            .map(|(k, v)| pair(k.as_bytes(), v.as_bytes()))
            .collect();
        let mut id = 0u64;
        // SAFETY: the configuration is live; every buffer outlives the call.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.0,
                &mut id,
                buf(cluster.as_bytes()),
                pairs.as_ptr(),
                pairs.len(),
                buf(body),
                timeout_ms,
            )
        };
        if result == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }

    /// Defines a metric (main thread, while the configuration loads).
    pub fn define(self, kind: Metric, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: the configuration is live; no labels.
        let result = unsafe {
            let define = match kind {
                Metric::Counter => envoy_dynamic_module_callback_http_filter_config_define_counter,
                Metric::Gauge => envoy_dynamic_module_callback_http_filter_config_define_gauge,
                Metric::Histogram => {
                    envoy_dynamic_module_callback_http_filter_config_define_histogram
                }
            };
            define(self.0, buf(name.as_bytes()), null(), 0, &mut id)
        };
        (result == METRICS_SUCCESS).then_some(id)
    }

    pub fn increment(self, kind: Metric, id: usize, value: u64) {
        // SAFETY: the configuration is live; no labels.
        unsafe {
            match kind {
                Metric::Counter => {
                    envoy_dynamic_module_callback_http_filter_config_increment_counter(
                        self.0,
                        id,
                        null(),
                        0,
                        value,
                    )
                }
                Metric::Gauge => envoy_dynamic_module_callback_http_filter_config_increment_gauge(
                    self.0,
                    id,
                    null(),
                    0,
                    value,
                ),
                Metric::Histogram => {
                    envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
                        self.0,
                        id,
                        null(),
                        0,
                        value,
                    )
                }
            };
        }
    }

    pub fn record(self, kind: Metric, id: usize, value: u64) {
        // SAFETY: the configuration is live; no labels.
        unsafe {
            match kind {
                Metric::Gauge => envoy_dynamic_module_callback_http_filter_config_set_gauge(
                    self.0,
                    id,
                    null(),
                    0,
                    value,
                ),
                Metric::Histogram => {
                    envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
                        self.0,
                        id,
                        null(),
                        0,
                        value,
                    )
                }
                Metric::Counter => {
                    envoy_dynamic_module_callback_http_filter_config_increment_counter(
                        self.0,
                        id,
                        null(),
                        0,
                        value,
                    )
                }
            };
        }
    }
}

// ---------------------------------------------------------- event hooks

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    crate::guard(null(), || {
        hooks::program_init();
        ABI_VERSION_C.as_ptr()
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    crate::guard(null(), || {
        match hooks::config_new(Config(config_envoy), name.as_slice(), config.as_slice()) {
            Some(shared) => Arc::into_raw(shared).cast(),
            None => null(),
        }
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ConfigModulePtr) {
    crate::guard((), || {
        if !config.is_null() {
            // SAFETY: made by `Arc::into_raw` in `config_new`, released once.
            let shared = unsafe { Arc::from_raw(config.cast::<hooks::SharedConfig>()) };
            hooks::config_destroy(&shared);
        }
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    crate::guard(null(), || {
        log(
            LOG_ERROR,
            "oauthv2info: configuration refused: per-route configuration is not supported (use one filter configuration per listener)",
        );
        null()
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(_config: *const c_void) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ConfigModulePtr,
    filter_envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    crate::guard(null(), || {
        if config.is_null() {
            return null();
        }
        let config = config.cast::<hooks::SharedConfig>();
        // SAFETY: `config` is the live `Arc` of `config_new` (Envoy destroys
        // the configuration after its filters): the filter takes one more
        // strong count of it.
        let shared = unsafe {
            Arc::increment_strong_count(config);
            Arc::from_raw(config)
        };
        let module = Box::new(hooks::filter_new(shared, Filter(filter_envoy)));
        Box::into_raw(module).cast()
    })
}

/// The module's object of a filter (made in `on_http_filter_new`).
fn module<'a>(ptr: FilterModulePtr) -> Option<&'a hooks::FilterModule> {
    // SAFETY: made by `Box::into_raw` in `on_http_filter_new`, freed only in
    // `on_http_filter_destroy`, after every other hook of the filter.
    unsafe { ptr.cast::<hooks::FilterModule>().as_ref() }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    let Some(m) = module(filter_module) else {
        return REQUEST_HEADERS_CONTINUE;
    };
    let filter = Filter(filter_envoy);
    let pause = crate::guard_stream(filter, m, |m| {
        hooks::request_headers(m, filter, end_of_stream)
    });
    if pause {
        REQUEST_HEADERS_STOP_ITERATION
    } else {
        REQUEST_HEADERS_CONTINUE
    }
}

/// A callout's answer, copied out of what Envoy lends for the hook.
fn answer(
    result: u32,
    headers: *const EnvoyHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) -> hooks::CallAnswer {
    if result != CALLOUT_RESULT_SUCCESS {
        // Reset or too large: no answer (the core sends it again).
        return hooks::CallAnswer {
            status: None,
            body: Vec::new(),
        };
    }
    let headers: &[EnvoyHeader] = if headers.is_null() || headers_size == 0 {
        &[]
    } else {
        // SAFETY: Envoy lends `headers_size` headers for the hook.
        unsafe { std::slice::from_raw_parts(headers, headers_size) }
    };
    let status = headers.iter().find_map(|h| {
        let key = EnvoyBuffer {
            ptr: h.key_ptr,
            length: h.key_length,
        };
        let value = EnvoyBuffer {
            ptr: h.value_ptr,
            length: h.value_length,
        };
        (key.as_slice() == b":status")
            .then(|| {
                std::str::from_utf8(value.as_slice())
                    .ok()?
                    .parse::<u16>()
                    .ok()
            })
            .flatten()
    });
    let chunks: &[EnvoyBuffer] = if body_chunks.is_null() || body_chunks_size == 0 {
        &[]
    } else {
        // SAFETY: Envoy lends `body_chunks_size` buffers for the hook.
        unsafe { std::slice::from_raw_parts(body_chunks, body_chunks_size) }
    };
    let mut body = Vec::with_capacity(chunks.iter().map(|c| c.length).sum());
    for chunk in chunks {
        body.extend_from_slice(chunk.as_slice());
    }
    hooks::CallAnswer { status, body }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    let Some(m) = module(filter_module) else {
        return;
    };
    let filter = Filter(filter_envoy);
    crate::guard_stream(filter, m, |m| {
        let answer = answer(result, headers, headers_size, body_chunks, body_chunks_size);
        hooks::callout_done(m, filter, callout_id, answer);
        false
    });
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    event_id: u64,
) {
    // A wake-up the module asked for (docs/native.md#ticks): Envoy calls
    // this only while the filter lives.
    let Some(m) = module(filter_module) else {
        return;
    };
    let filter = Filter(filter_envoy);
    crate::guard_stream(filter, m, |m| {
        hooks::filter_scheduled(m, filter, event_id);
        false
    });
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module: FilterModulePtr) {
    if filter_module.is_null() {
        return;
    }
    // SAFETY: made by `Box::into_raw` in `on_http_filter_new`; Envoy calls
    // no hook of this filter after this one.
    let m = unsafe { Box::from_raw(filter_module.cast::<hooks::FilterModule>().cast_mut()) };
    crate::guard((), || hooks::filter_destroy(&m));
}

/// The body of a request the filter holds waits with it (buffered).
#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _f: FilterEnvoyPtr,
    m: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    match module(m) {
        Some(m) if m.paused() => REQUEST_BODY_STOP_ITERATION_AND_BUFFER,
        _ => CONTINUE,
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _f: FilterEnvoyPtr,
    m: FilterModulePtr,
) -> u32 {
    match module(m) {
        Some(m) if m.paused() => REQUEST_TRAILERS_STOP_ITERATION,
        _ => CONTINUE,
    }
}

// The hooks a filter that only reads request headers has no use for: Envoy
// looks them up, so they exist, and let everything through.

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
) -> u32 {
    CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _stream_id: u64,
    _headers: *const EnvoyHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _stream_id: u64,
    _trailers: *const EnvoyHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _f: FilterEnvoyPtr,
    _m: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

/// The module's configuration behind a configuration hook.
fn shared<'a>(ptr: ConfigModulePtr) -> Option<&'a hooks::SharedConfig> {
    // SAFETY: the `Arc` of `config_new`; Envoy calls the configuration's
    // hooks while it lives (its scheduler and callouts end with it).
    unsafe { ptr.cast::<hooks::SharedConfig>().as_ref() }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _c: ConfigEnvoyPtr,
    m: ConfigModulePtr,
    _event_id: u64,
) {
    crate::guard((), || {
        if let Some(shared) = shared(m) {
            hooks::config_scheduled(shared);
        }
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _c: ConfigEnvoyPtr,
    m: ConfigModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    crate::guard((), || {
        if let Some(shared) = shared(m) {
            let answer = answer(result, headers, headers_size, body_chunks, body_chunks_size);
            hooks::config_callout_done(shared, callout_id, answer);
        }
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _c: ConfigEnvoyPtr,
    _m: ConfigModulePtr,
    _stream_id: u64,
    _headers: *const EnvoyHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _c: ConfigEnvoyPtr,
    _m: ConfigModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _c: ConfigEnvoyPtr,
    _m: ConfigModulePtr,
    _stream_id: u64,
    _trailers: *const EnvoyHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _c: ConfigEnvoyPtr,
    _m: ConfigModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _c: ConfigEnvoyPtr,
    _m: ConfigModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

// ---------------------------------------------------------- glibc floor
//
// The module must not need a newer glibc than the Envoy it runs in (Envoy
// 1.40's PyPI build needs GLIBC_2.30 at most). Built on a newer glibc, the
// standard library binds to symbols first versioned later: the pthread
// calls and `dlsym` (moved into libc in 2.34) and `stat64`/`fstat64` (2.33).
// The module defines them itself, hidden (its own calls, the standard
// library's included, bind to these at link time; nothing else sees them),
// each a jump to the original version: the pthread calls and `dlsym` to
// GLIBC_2.2.5 (`pthread_setname_np` to 2.12, where it began), the stat calls
// to the `__xstat64`/`__fxstat64` they replaced (version 1 of `struct
// stat`). `tests/native.rs` fails on any version newer than Envoy's.

#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
std::arch::global_asm!(
    // The old versions, under names of their own.
    ".symver oauthv2info_key_create, pthread_key_create@GLIBC_2.2.5",
    ".symver oauthv2info_key_delete, pthread_key_delete@GLIBC_2.2.5",
    ".symver oauthv2info_setspecific, pthread_setspecific@GLIBC_2.2.5",
    ".symver oauthv2info_xstat64, __xstat64@GLIBC_2.2.5",
    ".symver oauthv2info_pthread_create, pthread_create@GLIBC_2.2.5",
    ".symver oauthv2info_pthread_detach, pthread_detach@GLIBC_2.2.5",
    ".symver oauthv2info_pthread_join, pthread_join@GLIBC_2.2.5",
    ".symver oauthv2info_attr_setstacksize, pthread_attr_setstacksize@GLIBC_2.2.5",
    ".symver oauthv2info_setname_np, pthread_setname_np@GLIBC_2.12",
    ".symver oauthv2info_dlsym, dlsym@GLIBC_2.2.5",
    ".symver oauthv2info_fxstat64, __fxstat64@GLIBC_2.2.5",
    // Hidden definitions the module's own calls bind to at link time (not
    // exported: they never stand in for glibc's anywhere else).
    ".text",
    ".globl pthread_key_create",
    ".hidden pthread_key_create",
    ".globl pthread_key_delete",
    ".hidden pthread_key_delete",
    ".globl pthread_setspecific",
    ".hidden pthread_setspecific",
    ".globl stat64",
    ".hidden stat64",
    ".globl fstat64",
    ".hidden fstat64",
    ".globl pthread_create",
    ".hidden pthread_create",
    ".globl pthread_detach",
    ".hidden pthread_detach",
    ".globl pthread_join",
    ".hidden pthread_join",
    ".globl pthread_attr_setstacksize",
    ".hidden pthread_attr_setstacksize",
    ".globl pthread_setname_np",
    ".hidden pthread_setname_np",
    ".globl dlsym",
    ".hidden dlsym",
    "pthread_create:",
    "    jmp oauthv2info_pthread_create@PLT",
    "pthread_detach:",
    "    jmp oauthv2info_pthread_detach@PLT",
    "pthread_join:",
    "    jmp oauthv2info_pthread_join@PLT",
    "pthread_attr_setstacksize:",
    "    jmp oauthv2info_attr_setstacksize@PLT",
    "pthread_setname_np:",
    "    jmp oauthv2info_setname_np@PLT",
    "dlsym:",
    "    jmp oauthv2info_dlsym@PLT",
    "pthread_key_create:",
    "    jmp oauthv2info_key_create@PLT",
    "pthread_key_delete:",
    "    jmp oauthv2info_key_delete@PLT",
    "pthread_setspecific:",
    "    jmp oauthv2info_setspecific@PLT",
    // stat64(path, buf) is __xstat64(_STAT_VER = 1, path, buf).
    "stat64:",
    "    mov rdx, rsi",
    "    mov rsi, rdi",
    "    mov edi, 1",
    "    jmp oauthv2info_xstat64@PLT",
    // fstat64(fd, buf) is __fxstat64(1, fd, buf).
    "fstat64:",
    "    mov rdx, rsi",
    "    mov esi, edi",
    "    mov edi, 1",
    "    jmp oauthv2info_fxstat64@PLT",
);

#[cfg(all(test, target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
mod tests {
    use std::ffi::c_void;

    extern "C" {
        fn stat64(path: *const std::ffi::c_char, buf: *mut c_void) -> i32;
        fn fstat64(fd: i32, buf: *mut c_void) -> i32;
        fn pthread_key_create(key: *mut u32, d: Option<unsafe extern "C" fn(*mut c_void)>) -> i32;
        fn pthread_setspecific(key: u32, value: *const c_void) -> i32;
        fn pthread_key_delete(key: u32) -> i32;
    }

    /// `st_mode` in x86_64's `struct stat` (after dev, ino, nlink).
    fn mode(buf: &[u64; 18]) -> u32 {
        (buf[3] & 0xffff_ffff) as u32
    }

    #[test]
    fn the_glibc_floor_shims_do_what_glibc_does() {
        let mut buf = [0u64; 18];
        // SAFETY: a NUL-terminated path and a buffer as large as `struct stat`.
        assert_eq!(unsafe { stat64(c"/".as_ptr(), buf.as_mut_ptr().cast()) }, 0);
        assert_eq!(mode(&buf) & 0o170000, 0o040000, "/ is a directory");
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        // SAFETY: an open descriptor and a buffer as large as `struct stat`.
        assert_eq!(unsafe { fstat64(fd, buf.as_mut_ptr().cast()) }, 0);
        assert_eq!(mode(&buf) & 0o170000, 0o100000, "a regular file");
        let mut key = 0u32;
        // SAFETY: plain pthread key calls.
        unsafe {
            assert_eq!(pthread_key_create(&mut key, None), 0);
            assert_eq!(pthread_setspecific(key, std::ptr::dangling::<c_void>()), 0);
            assert_eq!(pthread_key_delete(key), 0);
        }
    }
}
