//! The publish sink: what a request's policies set goes to filter state,
//! to dynamic metadata (through the configured bridge), to the mapped
//! request headers, and for a fault to the local reply
//! (docs/configuration.md#publish).

use log::{debug, warn};
use oauthv2info_names::Fault;

use super::{Buffers, Stream, Worker};
use crate::config::{FilterConfig, MetadataBridge};
use crate::host::Host;
use crate::metrics;
use crate::publish::{push_netstring, EMPTY_METADATA_VALUE, METADATA_BRIDGE_KEY};
use crate::request::is_valid_header_value;

impl Worker {
    /// Filter state, dynamic metadata (by the configured bridge) and, for a
    /// fault, the local reply.
    pub(super) fn publish(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        stream: &Stream,
        fault: Option<Fault>,
    ) {
        let bridge = config.metadata.bridge;
        let mut b = std::mem::take(&mut self.buffers);
        b.blob.clear();
        push_netstring(&mut b.blob, config.metadata_namespace.as_bytes());
        let empty_blob = b.blob.len();
        // A fault reply carries the metadata headers itself (what it holds
        // is taken once, on this rare path).
        let mut reply_headers: Vec<(usize, bool, Vec<u8>)> = Vec::new();
        let Buffers { name, blob, .. } = &mut b;
        stream.flow.visit_published(config, name, |p| {
            let v = p.value;
            if !host.set_filter_state(p.name, v) {
                debug!(
                    "oauthv2info: could not write filter state {:?}",
                    crate::request::lossy(p.name)
                );
            }
            // header_to_metadata carries the variables it has a header for,
            // the Lua bridge the others; an empty value goes through its
            // header's companion, or through the Lua bridge when the chain
            // has it anyway (header_to_metadata sets no empty string).
            let meta = match bridge {
                MetadataBridge::None => return,
                MetadataBridge::Lua => None,
                MetadataBridge::HeaderToMetadata => p
                    .header
                    .and_then(|h| config.metadata.headers.get(usize::from(h)))
                    .filter(|_| !v.is_empty() || config.metadata.empty_companions),
            };
            match meta {
                Some(meta) => {
                    // Client copies were stripped before the filter ran.
                    if fault.is_some() {
                        if meta.on_reply {
                            let h = usize::from(p.header.unwrap_or(0));
                            reply_headers.push((h, v.is_empty(), v.to_vec()));
                        }
                    } else if !meta.on_request {
                        // Not a request rule: never set on a request that goes on.
                    } else if v.is_empty() {
                        host.add_request_header(&meta.empty_header, EMPTY_METADATA_VALUE);
                    } else {
                        host.add_request_header(&meta.header, v);
                    }
                }
                None => {
                    match p.bridge_key {
                        Some(key) => blob.extend_from_slice(key),
                        None => push_netstring(blob, p.name),
                    }
                    push_netstring(blob, v);
                }
            }
        });
        if b.blob.len() > empty_blob
            && !host.set_filter_state(METADATA_BRIDGE_KEY.as_bytes(), &b.blob)
        {
            debug!("oauthv2info: could not write the metadata bridge's entry");
        }
        self.buffers = b;
        if let Some(fault) = fault {
            // FaultRules, DefaultFaultRule or a RaiseFault build the reply
            // (crates/core/src/faults.rs); else Apigee's default one.
            let built = crate::faults::reply(config, &stream.flow, &stream.request, fault);
            let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(reply_headers.len() + 2);
            match &built {
                Some(reply) => headers.extend(
                    reply
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_bytes())),
                ),
                None => {
                    headers.push(("content-type", b"application/json"));
                    if let Some(challenge) = fault.www_authenticate() {
                        headers.push(("www-authenticate", challenge.as_bytes()));
                    }
                }
            }
            for (h, empty, v) in &reply_headers {
                if let Some(meta) = config.metadata.headers.get(*h) {
                    if *empty {
                        headers.push((meta.empty_header.as_str(), EMPTY_METADATA_VALUE));
                    } else {
                        headers.push((meta.header.as_str(), v.as_slice()));
                    }
                }
            }
            let (status, body) = match &built {
                Some(reply) => (
                    reply.status,
                    std::borrow::Cow::Borrowed(reply.body.as_str()),
                ),
                None => (
                    fault.status(),
                    stream
                        .flow
                        .reply_policy()
                        .and_then(|i| config.plans.get(i))
                        .map_or_else(
                            || {
                                std::borrow::Cow::Owned(crate::policies::fault_body(
                                    fault.faultstring(),
                                    fault.errorcode(),
                                ))
                            },
                            |plan| plan.fault_body(fault),
                        ),
                ),
            };
            if !host.send_local_response(status, &headers, body.as_bytes()) {
                warn!("oauthv2info: could not send the local reply");
            }
        }
    }

    /// `request_headers`: each mapped header set from its variable, or
    /// removed (a client's copy never reaches the upstream).
    pub(super) fn set_request_headers(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        stream: &Stream,
    ) {
        for mapping in &config.request_headers {
            let text = &mut self.buffers.text;
            text.clear();
            if !stream
                .flow
                .read(config, &mapping.source, &stream.request, text)
            {
                host.remove_request_header(&mapping.header);
                continue;
            }
            if !is_valid_header_value(text.as_bytes()) {
                host.remove_request_header(&mapping.header);
                self.metrics.count(metrics::HEADERS_REFUSED);
                let (header, variable) = (&mapping.header, &mapping.variable);
                self.header_warnings.warn(stream.flow.now_ms, || {
                    format!("request header {header:?} not set: the value of {variable:?} holds a control character")
                });
                continue;
            }
            if !host.set_request_header(&mapping.header, text.as_bytes()) {
                self.metrics.count(metrics::HEADERS_REFUSED);
                let header = &mapping.header;
                self.header_warnings.warn(stream.flow.now_ms, || {
                    format!("request header {header:?} could not be set")
                });
            }
        }
    }
}
