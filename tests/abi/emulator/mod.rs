//! A proxy-wasm host that runs the built `dist/oauthv2info.wasm` in an
//! interpreter (wasmi) and checks every host call the module makes: its
//! pointers and lengths lie in the module's memory, the map, buffer and
//! stream it names are the ones Envoy would give in that callback, a callout
//! carries the pseudo-headers Envoy requires, a stream is resumed only while
//! paused, and so on. What a check finds is a *violation*; a test with one
//! fails when its emulator is dropped.
//!
//! The host behaves as Envoy 1.40 does where the filter can tell
//! (docs/testing.md#the-built-wasm-in-a-host-emulator): statuses, the
//! header-map encoding, shared data with CAS, callouts answered through the
//! root context, filter state written by `proxy_set_property`. Every host
//! call is recorded ([`Emulator::calls`]), and any of them can be made to
//! return an error status ([`Emulator::fail`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

mod imports;

use imports::{link, Ctx};
use wasmi::{Caller, Config, Engine, Extern, Instance, Linker, Memory, Module, Store, Val};

// proxy-wasm ABI 0.2.1 statuses.
pub const OK: u32 = 0;
pub const NOT_FOUND: u32 = 1;
pub const BAD_ARGUMENT: u32 = 2;
pub const INVALID_MEMORY_ACCESS: u32 = 6;
pub const CAS_MISMATCH: u32 = 8;
pub const INTERNAL_FAILURE: u32 = 10;
pub const UNIMPLEMENTED: u32 = 12;

// Header maps and buffers.
pub const REQUEST_HEADERS: u32 = 0;
pub const CALL_RESPONSE_HEADERS: u32 = 6;
pub const CALL_RESPONSE_BODY: u32 = 4;
pub const PLUGIN_CONFIGURATION: u32 = 7;

// Log levels.
pub const DEBUG: u32 = 1;
pub const INFO: u32 = 2;
pub const WARN: u32 = 3;
pub const ERROR: u32 = 4;
pub const CRITICAL: u32 = 5;

/// What a headers callback answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// The root context (the plugin); streams are numbered from 2.
pub const ROOT: u32 = 1;

/// Instructions one callback may run before it counts as a hang.
const FUEL: u64 = 2_000_000_000;

/// The SDK imports these but the filter never calls them: a call is a
/// violation (and answers `Unimplemented`).
const NOT_USED: &[&str] = &[
    "proxy_close_stream",
    "proxy_get_status",
    "proxy_grpc_cancel",
    "proxy_grpc_stream",
    "proxy_grpc_close",
    "proxy_grpc_call",
    "proxy_grpc_send",
    "proxy_dequeue_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_register_shared_queue",
    "proxy_call_foreign_function",
    "proxy_done",
    "proxy_set_buffer_bytes",
    "proxy_set_header_map_pairs",
];

/// One host call, its arguments decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Log {
        level: u32,
        message: String,
    },
    CurrentTime,
    RandomGet {
        len: u32,
    },
    GetHeader {
        map: u32,
        key: String,
    },
    GetHeaders {
        map: u32,
    },
    ReplaceHeader {
        map: u32,
        key: String,
        value: Vec<u8>,
    },
    AddHeader {
        map: u32,
        key: String,
        value: Vec<u8>,
    },
    RemoveHeader {
        map: u32,
        key: String,
    },
    GetProperty {
        path: Vec<String>,
    },
    SetProperty {
        path: String,
        value: Vec<u8>,
    },
    GetSharedData {
        key: String,
    },
    SetSharedData {
        key: String,
        value: Vec<u8>,
        cas: u32,
    },
    GetBuffer {
        buffer: u32,
        start: u32,
        max: u32,
    },
    SendLocalResponse(Reply),
    ContinueStream {
        stream: u32,
    },
    SetEffectiveContext {
        context: u32,
    },
    SetTickPeriod {
        ms: u32,
    },
    DefineMetric {
        kind: u32,
        name: String,
    },
    IncrementMetric {
        id: u32,
        delta: i64,
    },
    RecordMetric {
        id: u32,
        value: u64,
    },
    Callout(Callout),
    /// An import the filter should never call.
    NotUsed {
        name: String,
    },
}

impl Call {
    /// The ABI function's name.
    pub fn name(&self) -> &str {
        match self {
            Call::Log { .. } => "proxy_log",
            Call::CurrentTime => "proxy_get_current_time_nanoseconds",
            Call::RandomGet { .. } => "random_get",
            Call::GetHeader { .. } => "proxy_get_header_map_value",
            Call::GetHeaders { .. } => "proxy_get_header_map_pairs",
            Call::ReplaceHeader { .. } => "proxy_replace_header_map_value",
            Call::AddHeader { .. } => "proxy_add_header_map_value",
            Call::RemoveHeader { .. } => "proxy_remove_header_map_value",
            Call::GetProperty { .. } => "proxy_get_property",
            Call::SetProperty { .. } => "proxy_set_property",
            Call::GetSharedData { .. } => "proxy_get_shared_data",
            Call::SetSharedData { .. } => "proxy_set_shared_data",
            Call::GetBuffer { .. } => "proxy_get_buffer_bytes",
            Call::SendLocalResponse(_) => "proxy_send_local_response",
            Call::ContinueStream { .. } => "proxy_continue_stream",
            Call::SetEffectiveContext { .. } => "proxy_set_effective_context",
            Call::SetTickPeriod { .. } => "proxy_set_tick_period_milliseconds",
            Call::DefineMetric { .. } => "proxy_define_metric",
            Call::IncrementMetric { .. } => "proxy_increment_metric",
            Call::RecordMetric { .. } => "proxy_record_metric",
            Call::Callout(_) => "proxy_http_call",
            Call::NotUsed { name } => name,
        }
    }
}

/// A recorded host call: the effective context it was made in, the call,
/// and the status the emulator answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub context: u32,
    pub call: Call,
    pub status: u32,
}

/// A local reply (`proxy_send_local_response`).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u32,
    pub details: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub grpc_status: i32,
}

/// An HTTP callout (`proxy_http_call`).
#[derive(Debug, Clone, PartialEq)]
pub struct Callout {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub timeout_ms: u32,
    /// Its token (0 when the host refused it).
    pub token: u32,
    /// The root context it belongs to (Envoy answers there).
    pub root: u32,
}

impl Callout {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP stream as the host sees it.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    /// The root context (plugin) it was created for.
    pub root: u32,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Properties the filter may read, by path (segments joined with NUL).
    pub properties: HashMap<String, Vec<u8>>,
    /// Filter state written by the filter, in order (key without `wasm.`).
    pub filter_state: Vec<(String, Vec<u8>)>,
    pub reply: Option<Reply>,
    /// Held by the filter (a headers callback answered Pause).
    pub paused: bool,
    /// Sent upstream (the headers callback continued, or a resume).
    pub forwarded: bool,
    /// Times `proxy_continue_stream` resumed it.
    pub resumed: u32,
    pub deleted: bool,
}

impl Stream {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The last value written to filter state `wasm.<key>`.
    pub fn state(&self, key: &str) -> Option<String> {
        self.filter_state
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

#[derive(Debug, Clone)]
pub struct Metric {
    pub kind: u32,
    pub name: String,
    /// A counter's or gauge's value.
    pub value: i64,
    /// A histogram's recorded values.
    pub recorded: Vec<u64>,
}

/// Which callback the module is in: what a host call may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Configure,
    Headers,
    CallResponse,
    Other,
}

/// A status the emulator answers instead of doing the call.
#[derive(Debug, Clone)]
struct Injected {
    name: String,
    status: u32,
    /// How many more calls get it (`None`: all).
    remaining: Option<u32>,
}

/// The host's side: everything the module can see or change.
pub struct Host {
    memory: Option<Memory>,
    phase: Phase,
    effective: u32,
    now_ns: u64,
    plugin_config: Vec<u8>,
    pub streams: HashMap<u32, Stream>,
    shared: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    clusters: Vec<String>,
    callouts: Vec<Callout>,
    next_token: u32,
    call_response: (Vec<(String, Vec<u8>)>, Vec<u8>),
    pub metrics: Vec<Metric>,
    /// Each root context's tick period.
    tick_ms: HashMap<u32, u32>,
    calls: Vec<Record>,
    injected: Vec<Injected>,
    violations: Vec<String>,
}

impl Host {
    fn new() -> Host {
        Host {
            memory: None,
            phase: Phase::Idle,
            effective: ROOT,
            // 2026-12-01T00:00:00Z.
            now_ns: 1_796_083_200_000_000_000,
            plugin_config: Vec::new(),
            streams: HashMap::new(),
            shared: HashMap::new(),
            next_cas: 1,
            clusters: vec!["token_service".into()],
            callouts: Vec::new(),
            next_token: 1,
            call_response: (Vec::new(), Vec::new()),
            metrics: Vec::new(),
            tick_ms: HashMap::new(),
            calls: Vec::new(),
            injected: Vec::new(),
            violations: Vec::new(),
        }
    }

    fn violation(&mut self, what: String) {
        self.violations
            .push(format!("context {}: {what}", self.effective));
    }

    /// The injected status for this call, if any (and uses it up).
    fn injected(&mut self, name: &str) -> Option<u32> {
        let i = self.injected.iter().position(|f| f.name == name)?;
        let status = self.injected[i].status;
        match &mut self.injected[i].remaining {
            Some(1) => {
                self.injected.remove(i);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(status)
    }

    fn record(&mut self, call: Call, status: u32) -> i32 {
        self.calls.push(Record {
            context: self.effective,
            call,
            status,
        });
        status as i32
    }

    /// The root context of the effective context.
    fn root(&self) -> u32 {
        self.streams
            .get(&self.effective)
            .map_or(self.effective, |s| s.root)
    }

    /// The effective context's stream, when it is a live HTTP stream.
    fn stream(&mut self) -> Option<&mut Stream> {
        let id = self.effective;
        self.streams.get_mut(&id).filter(|s| !s.deleted)
    }

    /// Checks that a request-header map may be used now: an HTTP stream
    /// whose headers have not gone upstream.
    fn request_map(&mut self, what: &str) -> bool {
        match self.stream() {
            Some(s) if s.forwarded || s.reply.is_some() => {
                self.violation(format!(
                    "{what}: the request headers have already gone (upstream or a local reply)"
                ));
                false
            }
            Some(_) => true,
            None => {
                self.violation(format!("{what}: not in an HTTP stream"));
                false
            }
        }
    }
}

/// The path of the built filter; a clear failure when it is missing.
pub fn wasm_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("dist/oauthv2info.wasm");
    assert!(
        path.is_file(),
        "{} is missing: build it first with `make wasm` (`make test` and `make abi` do)",
        path.display()
    );
    // Testing an old build would pass or fail for the wrong code.
    let built = modified(&path);
    let sources = [
        "src",
        "crates/core/src",
        "crates/names/src",
        "Cargo.toml",
        "Cargo.lock",
    ];
    let mut newer = Vec::new();
    for source in sources {
        newest(&root.join(source), &mut |file, at| {
            if at > built {
                newer.push(file.display().to_string());
            }
        });
    }
    assert!(
        newer.is_empty(),
        "{} is older than {newer:?}: rebuild it with `make wasm` (`make abi` does)",
        path.display()
    );
    path
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Calls `f` with every file under `path` (or `path` itself) and its
/// modification time.
fn newest(path: &Path, f: &mut impl FnMut(&Path, SystemTime)) {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            for entry in entries.flatten() {
                newest(&entry.path(), f);
            }
        }
        Err(_) => f(path, modified(path)),
    }
}

/// The module, validated and compiled once for all the tests of the run
/// (each test instantiates its own VM from it).
fn compiled() -> Result<(Engine, Module), String> {
    static COMPILED: OnceLock<Result<(Engine, Module), String>> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            let bytes =
                std::fs::read(wasm_path()).map_err(|e| format!("reading the .wasm: {e}"))?;
            let mut config = Config::default();
            config.consume_fuel(true);
            let engine = Engine::new(&config);
            let module =
                Module::new(&engine, &bytes).map_err(|e| format!("not a valid module: {e}"))?;
            Ok((engine, module))
        })
        .clone()
}

/// The filter's VM in the emulated host.
pub struct Emulator {
    store: Store<Host>,
    instance: Instance,
    /// The next context id (roots and streams share them, as in Envoy).
    next_context: u32,
}

impl Emulator {
    /// Loads the module and runs its `_initialize`, as Envoy does before
    /// any callback.
    pub fn load() -> Emulator {
        Emulator::try_load().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_load() -> Result<Emulator, String> {
        let (engine, module) = compiled()?;
        let mut linker = Linker::new(&engine);
        link(&mut linker).map_err(|e| format!("linking the host calls: {e}"))?;
        for import in module.imports() {
            let (m, n) = (import.module().to_string(), import.name().to_string());
            if m == "env" && NOT_USED.contains(&n.as_str()) {
                let Some(ty) = import.ty().func().cloned() else {
                    return Err(format!("import {m}.{n} is not a function"));
                };
                linker
                    .func_new(&m, &n.clone(), ty, move |mut c: Ctx<'_>, _args, results| {
                        let h = c.data_mut();
                        h.violation(format!("{n}: a host call the filter should never make"));
                        h.record(Call::NotUsed { name: n.clone() }, UNIMPLEMENTED);
                        if let Some(r) = results.first_mut() {
                            *r = Val::I32(UNIMPLEMENTED as i32);
                        }
                        Ok(())
                    })
                    .map_err(|e| e.to_string())?;
            }
        }
        let mut store = Store::new(&engine, Host::new());
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .map_err(|e| {
                format!("the module imports a host call the emulator does not provide: {e}")
            })?;
        let memory = instance
            .get_memory(&store, "memory")
            .ok_or("the module exports no memory")?;
        store.data_mut().memory = Some(memory);
        if instance
            .get_func(&store, "proxy_abi_version_0_2_1")
            .is_none()
        {
            return Err("the module does not export proxy_abi_version_0_2_1".into());
        }
        let mut emu = Emulator {
            store,
            instance,
            next_context: ROOT + 1,
        };
        emu.call::<(), ()>("_initialize", (), Phase::Other, ROOT)?;
        Ok(emu)
    }

    /// Loads the module, creates the root context, starts the VM and
    /// configures the plugin with `config`; both must succeed.
    pub fn start(config: &str) -> Emulator {
        let mut emu = Emulator::load();
        assert!(emu.vm_start(), "on_vm_start refused; log: {:?}", emu.logs());
        assert!(
            emu.configure(config),
            "the configuration was refused; log: {:?}",
            emu.logs()
        );
        emu
    }

    /// Runs export `name`; `Err` when it traps (a panic in the filter
    /// aborts: `unreachable`) or runs out of fuel (a hang).
    fn call<P: wasmi::WasmParams, R: wasmi::WasmResults>(
        &mut self,
        name: &str,
        params: P,
        phase: Phase,
        context: u32,
    ) -> Result<R, String> {
        let func = self
            .instance
            .get_typed_func::<P, R>(&self.store, name)
            .map_err(|e| format!("export {name}: {e}"))?;
        self.store
            .set_fuel(FUEL)
            .map_err(|e| format!("fuel: {e}"))?;
        let h = self.store.data_mut();
        h.phase = phase;
        h.effective = context;
        let result = func.call(&mut self.store, params);
        self.store.data_mut().phase = Phase::Idle;
        result.map_err(|e| {
            format!(
                "{name} trapped: {e}; critical log lines: {:?}",
                self.logs_at(CRITICAL)
            )
        })
    }

    fn must<R>(&self, r: Result<R, String>) -> R {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    /// `proxy_on_context_create` for the root, then `proxy_on_vm_start`.
    pub fn vm_start(&mut self) -> bool {
        self.start_root(ROOT)
    }

    fn start_root(&mut self, root: u32) -> bool {
        let r = self.call::<(i32, i32), ()>(
            "proxy_on_context_create",
            (root as i32, 0),
            Phase::Other,
            root,
        );
        self.must(r);
        let r =
            self.call::<(i32, i32), i32>("proxy_on_vm_start", (root as i32, 0), Phase::Other, root);
        self.must(r) != 0
    }

    /// `proxy_on_configure` with `config` as the plugin configuration.
    pub fn configure(&mut self, config: &str) -> bool {
        self.configure_root(ROOT, config)
    }

    fn configure_root(&mut self, root: u32, config: &str) -> bool {
        self.store.data_mut().plugin_config = config.as_bytes().to_vec();
        let len = config.len() as i32;
        let r = self.call::<(i32, i32), i32>(
            "proxy_on_configure",
            (root as i32, len),
            Phase::Configure,
            root,
        );
        self.must(r) != 0
    }

    /// A second plugin in the same VM (Envoy: another filter with the same
    /// `vm_id`), started and configured with `config`: its root context.
    pub fn add_plugin(&mut self, config: &str) -> u32 {
        let root = self.next_context;
        self.next_context += 1;
        assert!(self.start_root(root), "on_vm_start refused");
        assert!(
            self.configure_root(root, config),
            "the configuration was refused; log: {:?}",
            self.logs()
        );
        root
    }

    /// A new stream whose request headers are `headers` (after the
    /// pseudo-headers of a GET of `path`), with `properties` (path
    /// segments joined by NUL) and no body; its context id and what the
    /// filter answered.
    pub fn request_with(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        properties: &[(&str, &[u8])],
    ) -> (u32, Action) {
        self.request_on(ROOT, path, headers, properties)
    }

    /// [`Emulator::request_with`] for the plugin of root context `root`.
    pub fn request_on(
        &mut self,
        root: u32,
        path: &str,
        headers: &[(&str, &str)],
        properties: &[(&str, &[u8])],
    ) -> (u32, Action) {
        let id = self.next_context;
        self.next_context += 1;
        let mut all: Vec<(String, Vec<u8>)> = vec![
            (":authority".into(), b"api.example.com".to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
            (":method".into(), b"GET".to_vec()),
            (":scheme".into(), b"http".to_vec()),
        ];
        all.extend(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
        );
        let stream = Stream {
            root,
            headers: all,
            properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
            ..Stream::default()
        };
        let count = stream.headers.len() as i32;
        self.store.data_mut().streams.insert(id, stream);
        let r = self.call::<(i32, i32), ()>(
            "proxy_on_context_create",
            (id as i32, root as i32),
            Phase::Other,
            id,
        );
        self.must(r);
        let r = self.call::<(i32, i32, i32), i32>(
            "proxy_on_request_headers",
            (id as i32, count, 1),
            Phase::Headers,
            id,
        );
        let action = match self.must(r) {
            0 => Action::Continue,
            1 => Action::Pause,
            other => panic!("proxy_on_request_headers answered {other}"),
        };
        let h = self.store.data_mut();
        if let Some(s) = h.streams.get_mut(&id) {
            match action {
                Action::Continue if s.reply.is_none() => s.forwarded = true,
                Action::Continue => {}
                Action::Pause => s.paused = s.reply.is_none(),
            }
        }
        if action == Action::Continue && h.streams.get(&id).is_some_and(|s| s.reply.is_some()) {
            h.violation(format!("stream {id}: continued after a local reply"));
        }
        (id, action)
    }

    /// A GET of `path` with `headers`.
    pub fn request(&mut self, path: &str, headers: &[(&str, &str)]) -> (u32, Action) {
        self.request_with(path, headers, &[])
    }

    /// Answers callout `token`: Envoy delivers the answer to the root
    /// context, which made the call. `status` `None`: no `:status` (a
    /// reset).
    pub fn respond(&mut self, token: u32, status: Option<u16>, body: &str) {
        let r = self.try_respond(token, status, body);
        self.must(r)
    }

    pub fn try_respond(
        &mut self,
        token: u32,
        status: Option<u16>,
        body: &str,
    ) -> Result<(), String> {
        let h = self.store.data_mut();
        let root = h
            .callouts
            .iter()
            .find(|c| c.token == token)
            .map_or(ROOT, |c| c.root);
        let mut headers = Vec::new();
        if let Some(s) = status {
            headers.push((":status".to_string(), s.to_string().into_bytes()));
        }
        headers.push(("content-type".to_string(), b"application/json".to_vec()));
        let count = headers.len() as i32;
        h.call_response = (headers, body.as_bytes().to_vec());
        let params = (root as i32, token as i32, count, body.len() as i32, 0);
        let r = self.call::<(i32, i32, i32, i32, i32), ()>(
            "proxy_on_http_call_response",
            params,
            Phase::CallResponse,
            root,
        );
        self.store.data_mut().call_response = (Vec::new(), Vec::new());
        r
    }

    /// The root context's tick.
    pub fn tick(&mut self) {
        self.tick_root(ROOT)
    }

    pub fn tick_root(&mut self, root: u32) {
        let r = self.call::<i32, ()>("proxy_on_tick", root as i32, Phase::Other, root);
        self.must(r)
    }

    /// The tick period root context `root` asked for (0: none).
    pub fn tick_ms(&self, root: u32) -> u32 {
        self.host().tick_ms.get(&root).copied().unwrap_or(0)
    }

    /// The stream ends: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub fn end(&mut self, id: u32) {
        let r = self.call::<i32, i32>("proxy_on_done", id as i32, Phase::Other, id);
        self.must(r);
        let r = self.call::<i32, ()>("proxy_on_log", id as i32, Phase::Other, id);
        self.must(r);
        let r = self.call::<i32, ()>("proxy_on_delete", id as i32, Phase::Other, id);
        self.must(r);
        if let Some(s) = self.store.data_mut().streams.get_mut(&id) {
            s.deleted = true;
        }
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.store.data_mut().now_ns += ms * 1_000_000;
    }

    /// Makes the next `times` calls of host function `name` (every later
    /// one with `None`) answer `status` without doing anything.
    pub fn fail(&mut self, name: &str, status: u32, times: Option<u32>) {
        self.store.data_mut().injected.push(Injected {
            name: name.to_string(),
            status,
            remaining: times,
        });
    }

    pub fn host(&self) -> &Host {
        self.store.data()
    }

    pub fn stream(&self, id: u32) -> &Stream {
        &self.store.data().streams[&id]
    }

    /// Every host call so far, in order.
    pub fn calls(&self) -> &[Record] {
        &self.store.data().calls
    }

    /// Forgets the calls recorded so far.
    pub fn clear_calls(&mut self) {
        self.store.data_mut().calls.clear();
    }

    /// How many calls of host function `name` were made.
    pub fn count(&self, name: &str) -> usize {
        self.calls()
            .iter()
            .filter(|r| r.call.name() == name)
            .count()
    }

    /// The callouts made (accepted or not), in order.
    pub fn http_calls(&self) -> Vec<Callout> {
        self.calls()
            .iter()
            .filter_map(|r| match &r.call {
                Call::Callout(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every log line, with its level.
    pub fn logs(&self) -> Vec<(u32, String)> {
        self.calls()
            .iter()
            .filter_map(|r| match &r.call {
                Call::Log { level, message } => Some((*level, message.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn logs_at(&self, level: u32) -> Vec<String> {
        self.logs()
            .into_iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m)
            .collect()
    }

    /// A metric's value (a counter's or gauge's) by its full name.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.host()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    pub fn shared_data(&self, key: &str) -> Option<&(Vec<u8>, u32)> {
        self.host().shared.get(key)
    }

    /// What the checks found so far (and forgets it).
    pub fn take_violations(&mut self) -> Vec<String> {
        std::mem::take(&mut self.store.data_mut().violations)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let violations = &self.store.data().violations;
        if !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "host calls the emulator found wrong:\n{}",
                violations.join("\n")
            );
        }
    }
}
