//! The host calls the filter imports, each checked and recorded: reading
//! and writing the module's memory, and handing buffers over through the
//! module's own allocator, as proxy-wasm hosts do.

use super::*;

pub(super) type Ctx<'a> = Caller<'a, Host>;

fn memory(caller: &Ctx<'_>) -> Result<Memory, wasmi::Error> {
    caller
        .data()
        .memory
        .ok_or_else(|| wasmi::Error::new("the module has no memory"))
}

/// Reads `len` bytes at `ptr`; `None` (and a violation) outside memory.
fn read(caller: &mut Ctx<'_>, ptr: i32, len: i32, what: &str) -> Option<Vec<u8>> {
    let mem = memory(caller).ok()?;
    let (at, len) = (ptr as u32 as usize, len as u32 as usize);
    if at == 0 && len != 0 {
        caller
            .data_mut()
            .violation(format!("{what}: a null pointer with length {len}"));
        return None;
    }
    // Checked before allocating: a garbage length must not exhaust ours.
    if at.saturating_add(len) > mem.data_size(&*caller) {
        caller.data_mut().violation(format!(
            "{what}: {len} bytes at {at:#x} lie outside the module's memory"
        ));
        return None;
    }
    let mut buf = vec![0u8; len];
    mem.read(&*caller, at, &mut buf).ok()?;
    Some(buf)
}

fn read_string(caller: &mut Ctx<'_>, ptr: i32, len: i32, what: &str) -> Option<String> {
    let bytes = read(caller, ptr, len, what)?;
    match String::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(_) => {
            caller.data_mut().violation(format!("{what}: not UTF-8"));
            None
        }
    }
}

fn write(caller: &mut Ctx<'_>, ptr: i32, bytes: &[u8], what: &str) -> bool {
    let Ok(mem) = memory(caller) else {
        return false;
    };
    if mem.write(&mut *caller, ptr as u32 as usize, bytes).is_err() {
        caller.data_mut().violation(format!(
            "{what}: {} bytes at {ptr:#x} lie outside the module's memory",
            bytes.len()
        ));
        return false;
    }
    true
}

/// Hands `data` to the module as proxy-wasm does: a buffer allocated with
/// the module's own allocator (`malloc`), its address and length written
/// to the two out-pointers.
fn give(
    caller: &mut Ctx<'_>,
    data: &[u8],
    ptr_out: i32,
    len_out: i32,
    what: &str,
) -> Result<u32, wasmi::Error> {
    let addr = if data.is_empty() {
        0
    } else {
        let malloc = caller
            .get_export("malloc")
            .and_then(Extern::into_func)
            .ok_or_else(|| wasmi::Error::new("the module exports no malloc"))?
            .typed::<i32, i32>(&*caller)?;
        let addr = malloc.call(&mut *caller, data.len() as i32)?;
        if addr == 0 {
            caller
                .data_mut()
                .violation(format!("{what}: the module's malloc returned null"));
            return Ok(INTERNAL_FAILURE);
        }
        if !write(caller, addr, data, what) {
            return Ok(INVALID_MEMORY_ACCESS);
        }
        addr
    };
    if !write(caller, ptr_out, &addr.to_le_bytes(), what)
        || !write(caller, len_out, &(data.len() as u32).to_le_bytes(), what)
    {
        return Ok(INVALID_MEMORY_ACCESS);
    }
    Ok(OK)
}

/// proxy-wasm's map encoding: count, (key length, value length) pairs,
/// then each key and value followed by a NUL byte.
pub fn encode_pairs(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// The reverse of [`encode_pairs`]; `None` for a malformed map.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut at = 4 + count.checked_mul(8)?;
    let mut out = Vec::new();
    for i in 0..count {
        let (k, v) = (u32_at(4 + i * 8)?, u32_at(8 + i * 8)?);
        let key = bytes.get(at..at + k)?;
        if bytes.get(at + k) != Some(&0) {
            return None;
        }
        at += k + 1;
        let value = bytes.get(at..at + v)?;
        if bytes.get(at + v) != Some(&0) {
            return None;
        }
        at += v + 1;
        out.push((String::from_utf8(key.to_vec()).ok()?, value.to_vec()));
    }
    (at == bytes.len()).then_some(out)
}

fn read_pairs(
    caller: &mut Ctx<'_>,
    ptr: i32,
    len: i32,
    what: &str,
) -> Option<Vec<(String, Vec<u8>)>> {
    let bytes = read(caller, ptr, len, what)?;
    let pairs = decode_pairs(&bytes);
    if pairs.is_none() {
        caller
            .data_mut()
            .violation(format!("{what}: not a well-formed header map"));
    }
    pairs
}

fn text_pairs(pairs: Vec<(String, Vec<u8>)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// Defines every import the filter may use.
pub(super) fn link(linker: &mut Linker<Host>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Ctx<'_>, level: i32, ptr: i32, len: i32| -> i32 {
            let Some(message) = read_string(&mut c, ptr, len, "proxy_log") else {
                return INVALID_MEMORY_ACCESS as i32;
            };
            let level = level as u32;
            let h = c.data_mut();
            if level > CRITICAL {
                h.violation(format!("proxy_log: no log level {level}"));
            }
            let status = h.injected("proxy_log").unwrap_or(OK);
            h.record(Call::Log { level, message }, status)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Ctx<'_>, out: i32| -> i32 {
            if let Some(status) = c.data_mut().injected("proxy_get_current_time_nanoseconds") {
                return c.data_mut().record(Call::CurrentTime, status);
            }
            let now = c.data().now_ns;
            let status = if write(
                &mut c,
                out,
                &now.to_le_bytes(),
                "proxy_get_current_time_nanoseconds",
            ) {
                OK
            } else {
                INVALID_MEMORY_ACCESS
            };
            c.data_mut().record(Call::CurrentTime, status)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "random_get",
        |mut c: Ctx<'_>, ptr: i32, len: i32| -> i32 {
            let call = Call::RandomGet { len: len as u32 };
            if let Some(status) = c.data_mut().injected("random_get") {
                c.data_mut().record(call, status);
                // WASI's errno for an I/O error.
                return 29;
            }
            let bytes: Vec<u8> = (0..len as u32)
                .map(|i| (i as u8).wrapping_mul(37) ^ 0x5a)
                .collect();
            let ok = write(&mut c, ptr, &bytes, "random_get");
            c.data_mut()
                .record(call, if ok { OK } else { INVALID_MEMORY_ACCESS });
            if ok {
                0
            } else {
                21 // WASI's EFAULT
            }
        },
    )?;
    link_headers(linker)?;
    link_properties(linker)?;
    link_shared_data(linker)?;
    link_stream(linker)?;
    link_metrics(linker)?;
    link_http_call(linker)?;
    Ok(())
}

fn link_headers(linker: &mut Linker<Host>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Ctx<'_>,
         map: i32,
         kp: i32,
         kl: i32,
         vp: i32,
         vl: i32|
         -> Result<i32, wasmi::Error> {
            let name = "proxy_get_header_map_value";
            let Some(key) = read_string(&mut c, kp, kl, name) else {
                return Ok(INVALID_MEMORY_ACCESS as i32);
            };
            let map = map as u32;
            let call = Call::GetHeader {
                map,
                key: key.clone(),
            };
            if let Some(status) = c.data_mut().injected(name) {
                return Ok(c.data_mut().record(call, status));
            }
            let h = c.data_mut();
            let value = match map {
                REQUEST_HEADERS => {
                    if !h.request_map(name) {
                        return Ok(h.record(call, BAD_ARGUMENT));
                    }
                    h.stream().and_then(|s| {
                        s.headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                            .map(|(_, v)| v.clone())
                    })
                }
                CALL_RESPONSE_HEADERS => {
                    if h.phase != Phase::CallResponse {
                        h.violation(format!(
                            "{name}: the callout response headers outside on_http_call_response"
                        ));
                        return Ok(h.record(call, BAD_ARGUMENT));
                    }
                    h.call_response
                        .0
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                        .map(|(_, v)| v.clone())
                }
                other => {
                    h.violation(format!("{name}: the filter reads no header map {other}"));
                    return Ok(h.record(call, BAD_ARGUMENT));
                }
            };
            let Some(value) = value else {
                return Ok(c.data_mut().record(call, NOT_FOUND));
            };
            let status = give(&mut c, &value, vp, vl, name)?;
            Ok(c.data_mut().record(call, status))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Ctx<'_>, map: i32, vp: i32, vl: i32| -> Result<i32, wasmi::Error> {
            let name = "proxy_get_header_map_pairs";
            let map = map as u32;
            let call = Call::GetHeaders { map };
            if let Some(status) = c.data_mut().injected(name) {
                return Ok(c.data_mut().record(call, status));
            }
            let h = c.data_mut();
            if map != REQUEST_HEADERS {
                h.violation(format!(
                    "{name}: the filter reads no whole header map {map}"
                ));
                return Ok(h.record(call, BAD_ARGUMENT));
            }
            if !h.request_map(name) {
                return Ok(h.record(call, BAD_ARGUMENT));
            }
            let bytes = encode_pairs(&h.stream().map(|s| s.headers.clone()).unwrap_or_default());
            let status = give(&mut c, &bytes, vp, vl, name)?;
            Ok(c.data_mut().record(call, status))
        },
    )?;
    // Replace, add and remove: the request headers of a stream still held.
    for (name, op) in [
        ("proxy_replace_header_map_value", 0),
        ("proxy_add_header_map_value", 1),
    ] {
        linker.func_wrap(
            "env",
            name,
            move |mut c: Ctx<'_>, map: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> i32 {
                let (Some(key), Some(value)) = (
                    read_string(&mut c, kp, kl, name),
                    read(&mut c, vp, vl, name),
                ) else {
                    return INVALID_MEMORY_ACCESS as i32;
                };
                let map = map as u32;
                let call = if op == 0 {
                    Call::ReplaceHeader {
                        map,
                        key: key.clone(),
                        value: value.clone(),
                    }
                } else {
                    Call::AddHeader {
                        map,
                        key: key.clone(),
                        value: value.clone(),
                    }
                };
                let h = c.data_mut();
                if let Some(status) = h.injected(name) {
                    return h.record(call, status);
                }
                if map != REQUEST_HEADERS {
                    h.violation(format!("{name}: the filter changes no header map {map}"));
                    return h.record(call, BAD_ARGUMENT);
                }
                if !h.request_map(name) {
                    return h.record(call, BAD_ARGUMENT);
                }
                if let Some(s) = h.stream() {
                    if op == 0 {
                        s.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
                    }
                    s.headers.push((key, value));
                }
                h.record(call, OK)
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Ctx<'_>, map: i32, kp: i32, kl: i32| -> i32 {
            let name = "proxy_remove_header_map_value";
            let Some(key) = read_string(&mut c, kp, kl, name) else {
                return INVALID_MEMORY_ACCESS as i32;
            };
            let map = map as u32;
            let call = Call::RemoveHeader {
                map,
                key: key.clone(),
            };
            let h = c.data_mut();
            if let Some(status) = h.injected(name) {
                return h.record(call, status);
            }
            if map != REQUEST_HEADERS {
                h.violation(format!("{name}: the filter changes no header map {map}"));
                return h.record(call, BAD_ARGUMENT);
            }
            if !h.request_map(name) {
                return h.record(call, BAD_ARGUMENT);
            }
            if let Some(s) = h.stream() {
                s.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
            }
            h.record(call, OK)
        },
    )?;
    Ok(())
}

fn link_properties(linker: &mut Linker<Host>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Ctx<'_>, pp: i32, pl: i32, vp: i32, vl: i32| -> Result<i32, wasmi::Error> {
            let name = "proxy_get_property";
            let Some(path) = read_string(&mut c, pp, pl, name) else {
                return Ok(INVALID_MEMORY_ACCESS as i32);
            };
            let call = Call::GetProperty {
                path: path.split('\0').map(String::from).collect(),
            };
            let h = c.data_mut();
            if let Some(status) = h.injected(name) {
                return Ok(h.record(call, status));
            }
            let Some(value) = h.stream().and_then(|s| s.properties.get(&path).cloned()) else {
                return Ok(h.record(call, NOT_FOUND));
            };
            let status = give(&mut c, &value, vp, vl, name)?;
            Ok(c.data_mut().record(call, status))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Ctx<'_>, pp: i32, pl: i32, vp: i32, vl: i32| -> i32 {
            let name = "proxy_set_property";
            let (Some(path), Some(value)) = (
                read_string(&mut c, pp, pl, name),
                read(&mut c, vp, vl, name),
            ) else {
                return INVALID_MEMORY_ACCESS as i32;
            };
            let call = Call::SetProperty {
                path: path.clone(),
                value: value.clone(),
            };
            let h = c.data_mut();
            if let Some(status) = h.injected(name) {
                return h.record(call, status);
            }
            if path.is_empty() {
                h.violation(format!("{name}: an empty path"));
                return h.record(call, BAD_ARGUMENT);
            }
            // Envoy writes filter state only for a stream.
            let Some(s) = h.stream() else {
                h.violation(format!(
                    "{name}: filter state {path:?} outside an HTTP stream"
                ));
                return h.record(call, BAD_ARGUMENT);
            };
            s.filter_state.push((path, value));
            h.record(call, OK)
        },
    )?;
    Ok(())
}

fn link_shared_data(linker: &mut Linker<Host>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Ctx<'_>,
         kp: i32,
         kl: i32,
         vp: i32,
         vl: i32,
         casp: i32|
         -> Result<i32, wasmi::Error> {
            let name = "proxy_get_shared_data";
            let Some(key) = read_string(&mut c, kp, kl, name) else {
                return Ok(INVALID_MEMORY_ACCESS as i32);
            };
            let call = Call::GetSharedData { key: key.clone() };
            let h = c.data_mut();
            if let Some(status) = h.injected(name) {
                return Ok(h.record(call, status));
            }
            let Some((value, cas)) = h.shared.get(&key).cloned() else {
                return Ok(h.record(call, NOT_FOUND));
            };
            let mut status = give(&mut c, &value, vp, vl, name)?;
            if status == OK && !write(&mut c, casp, &cas.to_le_bytes(), name) {
                status = INVALID_MEMORY_ACCESS;
            }
            Ok(c.data_mut().record(call, status))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Ctx<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> i32 {
            let name = "proxy_set_shared_data";
            let (Some(key), Some(value)) = (
                read_string(&mut c, kp, kl, name),
                read(&mut c, vp, vl, name),
            ) else {
                return INVALID_MEMORY_ACCESS as i32;
            };
            let cas = cas as u32;
            let call = Call::SetSharedData {
                key: key.clone(),
                value: value.clone(),
                cas,
            };
            let h = c.data_mut();
            if let Some(status) = h.injected(name) {
                return h.record(call, status);
            }
            // Envoy: a CAS of 0 always writes; another must match.
            if cas != 0
                && h.shared
                    .get(&key)
                    .is_none_or(|(_, current)| *current != cas)
            {
                return h.record(call, CAS_MISMATCH);
            }
            h.next_cas += 1;
            let next = h.next_cas;
            h.shared.insert(key, (value, next));
            h.record(call, OK)
        },
    )?;
    Ok(())
}

fn link_stream(linker: &mut Linker<Host>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Ctx<'_>,
         buffer: i32,
         start: i32,
         max: i32,
         vp: i32,
         vl: i32|
         -> Result<i32, wasmi::Error> {
            let name = "proxy_get_buffer_bytes";
            let (buffer, start, max) = (buffer as u32, start as u32, max as u32);
            let call = Call::GetBuffer { buffer, start, max };
            let h = c.data_mut();
            if let Some(status) = h.injected(name) {
                return Ok(h.record(call, status));
            }
            let data = match (buffer, h.phase) {
                (PLUGIN_CONFIGURATION, Phase::Configure) => h.plugin_config.clone(),
                (CALL_RESPONSE_BODY, Phase::CallResponse) => h.call_response.1.clone(),
                (b, phase) => {
                    h.violation(format!("{name}: buffer {b} in {phase:?}"));
                    return Ok(h.record(call, NOT_FOUND));
                }
            };
            let from = (start as usize).min(data.len());
            let to = from.saturating_add(max as usize).min(data.len());
            let status = give(&mut c, &data[from..to], vp, vl, name)?;
            Ok(c.data_mut().record(call, status))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Ctx<'_>,
         status: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         grpc: i32|
         -> i32 {
            let name = "proxy_send_local_response";
            let (Some(details), Some(body), Some(headers)) = (
                read(&mut c, dp, dl, name),
                read(&mut c, bp, bl, name),
                read_pairs(&mut c, hp, hl, name),
            ) else {
                return INVALID_MEMORY_ACCESS as i32;
            };
            let reply = Reply {
                status: status as u32,
                details,
                headers,
                body,
                grpc_status: grpc,
            };
            let h = c.data_mut();
            if let Some(s) = h.injected(name) {
                return h.record(Call::SendLocalResponse(reply), s);
            }
            if !(100..600).contains(&reply.status) {
                h.violation(format!("{name}: HTTP status {}", reply.status));
            }
            let answer = match h.stream() {
                None => Err("not in an HTTP stream"),
                Some(s) if s.reply.is_some() => Err("a second local reply"),
                Some(s) if s.forwarded => Err("the request already went upstream"),
                Some(s) => {
                    s.reply = Some(reply.clone());
                    s.paused = false;
                    Ok(())
                }
            };
            let status = match answer {
                Ok(()) => OK,
                Err(why) => {
                    h.violation(format!("{name}: {why}"));
                    BAD_ARGUMENT
                }
            };
            h.record(Call::SendLocalResponse(reply), status)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: Ctx<'_>, stream: i32| -> i32 {
            let name = "proxy_continue_stream";
            let call = Call::ContinueStream {
                stream: stream as u32,
            };
            let h = c.data_mut();
            if let Some(status) = h.injected(name) {
                return h.record(call, status);
            }
            if stream != 0 {
                h.violation(format!(
                    "{name}: stream type {stream} (the filter holds requests only)"
                ));
                return h.record(call, BAD_ARGUMENT);
            }
            let answer = match h.stream() {
                None => Err("not in an HTTP stream"),
                Some(s) if !s.paused => Err("the request is not held"),
                Some(s) => {
                    s.paused = false;
                    s.forwarded = true;
                    s.resumed += 1;
                    Ok(())
                }
            };
            match answer {
                Ok(()) => h.record(call, OK),
                Err(why) => {
                    h.violation(format!("{name}: {why}"));
                    h.record(call, BAD_ARGUMENT)
                }
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Ctx<'_>, context: i32| -> i32 {
            let name = "proxy_set_effective_context";
            let context = context as u32;
            let call = Call::SetEffectiveContext { context };
            let h = c.data_mut();
            if let Some(status) = h.injected(name) {
                return h.record(call, status);
            }
            let live = context == ROOT || h.streams.get(&context).is_some_and(|s| !s.deleted);
            if !live {
                h.violation(format!("{name}: no live context {context}"));
                return h.record(call, BAD_ARGUMENT);
            }
            let status = h.record(call, OK);
            h.effective = context;
            status
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Ctx<'_>, ms: i32| -> i32 {
            let call = Call::SetTickPeriod { ms: ms as u32 };
            let h = c.data_mut();
            if let Some(status) = h.injected("proxy_set_tick_period_milliseconds") {
                return h.record(call, status);
            }
            let root = h.root();
            h.tick_ms.insert(root, ms as u32);
            h.record(call, OK)
        },
    )?;
    Ok(())
}

fn link_metrics(linker: &mut Linker<Host>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Ctx<'_>, kind: i32, np: i32, nl: i32, idp: i32| -> i32 {
            let name = "proxy_define_metric";
            let Some(metric) = read_string(&mut c, np, nl, name) else {
                return INVALID_MEMORY_ACCESS as i32;
            };
            let kind = kind as u32;
            let call = Call::DefineMetric {
                kind,
                name: metric.clone(),
            };
            let h = c.data_mut();
            if let Some(status) = h.injected(name) {
                return h.record(call, status);
            }
            if kind > 2 || metric.is_empty() {
                h.violation(format!("{name}: kind {kind}, name {metric:?}"));
                return h.record(call, BAD_ARGUMENT);
            }
            let index = match h
                .metrics
                .iter()
                .position(|m| m.name == metric && m.kind == kind)
            {
                Some(i) => i,
                None => {
                    h.metrics.push(Metric {
                        kind,
                        name: metric,
                        value: 0,
                        recorded: Vec::new(),
                    });
                    h.metrics.len() - 1
                }
            };
            let id = index as u32 + 1;
            let status = if write(&mut c, idp, &id.to_le_bytes(), name) {
                OK
            } else {
                INVALID_MEMORY_ACCESS
            };
            c.data_mut().record(call, status)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: Ctx<'_>, id: i32, delta: i64| -> i32 {
            let name = "proxy_increment_metric";
            let call = Call::IncrementMetric {
                id: id as u32,
                delta,
            };
            let h = c.data_mut();
            if let Some(status) = h.injected(name) {
                return h.record(call, status);
            }
            match h.metrics.get_mut((id as u32 as usize).wrapping_sub(1)) {
                Some(m) if m.kind != 2 => {
                    m.value += delta;
                    h.record(call, OK)
                }
                _ => {
                    h.violation(format!("{name}: no counter or gauge {id}"));
                    h.record(call, BAD_ARGUMENT)
                }
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: Ctx<'_>, id: i32, value: i64| -> i32 {
            let name = "proxy_record_metric";
            let call = Call::RecordMetric {
                id: id as u32,
                value: value as u64,
            };
            let h = c.data_mut();
            if let Some(status) = h.injected(name) {
                return h.record(call, status);
            }
            match h.metrics.get_mut((id as u32 as usize).wrapping_sub(1)) {
                Some(m) if m.kind == 2 => m.recorded.push(value as u64),
                Some(m) if m.kind == 1 => m.value = value,
                _ => {
                    h.violation(format!("{name}: no gauge or histogram {id}"));
                    return h.record(call, BAD_ARGUMENT);
                }
            }
            h.record(call, OK)
        },
    )?;
    Ok(())
}

fn link_http_call(linker: &mut Linker<Host>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Ctx<'_>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout: i32,
         tokp: i32|
         -> i32 {
            let name = "proxy_http_call";
            let (Some(cluster), Some(headers), Some(body), Some(trailers)) = (
                read_string(&mut c, up, ul, name),
                read_pairs(&mut c, hp, hl, name),
                read(&mut c, bp, bl, name),
                read_pairs(&mut c, tp, tl, name),
            ) else {
                return INVALID_MEMORY_ACCESS as i32;
            };
            let mut callout = Callout {
                cluster,
                headers: text_pairs(headers),
                body,
                trailers: text_pairs(trailers),
                timeout_ms: timeout as u32,
                token: 0,
                root: 0,
            };
            let h = c.data_mut();
            callout.root = h.root();
            if let Some(status) = h.injected(name) {
                return h.record(Call::Callout(callout), status);
            }
            // What Envoy refuses at once.
            let missing: Vec<&str> = [":method", ":path", ":authority"]
                .into_iter()
                .filter(|p| callout.header(p).is_none_or(str::is_empty))
                .collect();
            if !missing.is_empty() {
                h.violation(format!(
                    "{name}: no {missing:?} (Envoy answers BadArgument)"
                ));
                return h.record(Call::Callout(callout), BAD_ARGUMENT);
            }
            if callout.timeout_ms == 0 {
                h.violation(format!("{name}: timeout 0 (no timeout at all in Envoy)"));
            }
            if !h.clusters.contains(&callout.cluster) {
                return h.record(Call::Callout(callout), BAD_ARGUMENT);
            }
            callout.token = h.next_token;
            h.next_token += 1;
            let token = callout.token;
            h.callouts.push(callout.clone());
            if !write(&mut c, tokp, &token.to_le_bytes(), name) {
                return c
                    .data_mut()
                    .record(Call::Callout(callout), INVALID_MEMORY_ACCESS);
            }
            c.data_mut().record(Call::Callout(callout), OK)
        },
    )?;
    Ok(())
}
