//! The module's heap: Talc over the Wasm memory. On the filter's target
//! (`wasm32-unknown-unknown`, docs/decisions.md#the-wasm-target) the
//! standard library would bring its own port of dlmalloc; Talc is made for
//! Wasm and 6.8 KB smaller in the `.wasm` (docs/performance.md#module-size).
//! A VM runs one thread, so the single-threaded form needs no lock.

#[global_allocator]
static HEAP: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
