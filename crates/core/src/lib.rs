//! The pure core of oauthv2info: Apigee's GetOAuthV2Info, SetOAuthV2Info
//! and OAuthV2 VerifyAccessToken, with step conditions, as host-independent
//! code. Nothing here calls proxy-wasm; the filter in `src/` is a thin
//! adapter that implements [`Host`] over the host calls and forwards
//! Envoy's callbacks to [`Worker`].
//!
//! The map, from the bottom (each module uses only those above it, but
//! for the flow's run steps, which the policies provide):
//!
//! - `oauthv2info-names` (shared facts: variable names, faults, token kinds);
//!   `xml`, `error`, `regex` (JavaRegex's matcher), `number`
//!   (the one decimal writer);
//! - `request` (request variables), `publish` (patterns and encodings),
//!   `profile` (the binary token profile and Apigee's status rules),
//!   `condition` (Apigee's condition language), `cache` (entries and
//!   slots), `feed` (the change feed's record and pages);
//! - `policies/`: one module per Apigee policy (`get`, `set`, `verify`,
//!   `raise_fault`, `assign_message`: its elements, parsing, compiled run
//!   step, status rules, variables and checker line), `policies/elements`
//!   (the shared element readers), `policies/message` (the response a
//!   fault handler builds) and the one dispatch (`policies!` in
//!   `policies/mod.rs`); `template` (message templates);
//! - `faults/` (FaultRules and DefaultFaultRule: which rule runs, the
//!   reply it builds);
//! - `plan` and `config` (the compiled configuration); `protocol` (the
//!   token-service protocol: what is asked, what the answers mean); `flow`
//!   (one request through the policies); [`catalog`] (what policies set,
//!   for the checker and the docs);
//! - [`host`] (the [`Host`] trait, and behind `test-host` the one fake
//!   host), `metrics`, `filter/` (the per-worker driver, one job a module:
//!   `driver` for a request, `shared_cache`, `poller` for the change feed,
//!   `sink` for what is published, `budget` for lookups of unknown
//!   tokens).
//!
//! What other crates use is re-exported here; the rest is `pub(crate)`.

mod cache;
pub mod catalog;
mod condition;
mod config;
mod error;
mod faults;
mod feed;
mod filter;
mod flow;
pub mod host;
mod metrics;
mod number;
mod plan;
mod policies;
mod profile;
mod protocol;
mod publish;
mod regex;
mod request;
mod template;
mod xml;

pub use oauthv2info_names as names;

// The host adapters: the proxy-wasm filter (`src/`) and any other.
pub use filter::{Action, Worker};
pub use host::{Host, MetricKind, SharedWrite};

// The configuration, for the checker (`crates/check`) and the tests of the
// shipped configs.
pub use config::{parse_config, FilterConfig, MetadataBridge, MetadataHeader};
pub use error::ConfigError;
pub use policies::{parse_policy, Policy};

// The XML tree policies are read into, for the importer of Apigee bundles
// (`crates/check/src/import`).
pub use xml::{parse as parse_xml, Element};

// The parsers of untrusted input and their encoders, for the fuzz targets
// and the property tests (docs/testing.md#fuzzing).
pub use cache::{encode as encode_cache_entry, EntryHead};
pub use condition::{Condition, Kind as ConditionKind, Scratch, Vars};
pub use feed::{parse_feed, FeedAnswer, FeedState, Recent};
pub use profile::{Lookup, Profile, ProfileBuilder};
pub use protocol::{parse_introspection, parse_set_response, Answer};
pub use publish::{decode_bridge, encode_bridge, Family, Publish};
pub use regex::{Cache as RegexCache, Regex};
pub use request::{
    is_valid_header_value, percent_decode, percent_encode, Headers, RequestInfo, RequestVar,
};
pub use template::Template;
