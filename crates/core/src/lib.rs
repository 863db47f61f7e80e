//! The pure core of oauthv2info: Apigee's GetOAuthV2Info, SetOAuthV2Info
//! and OAuthV2 VerifyAccessToken, with step conditions, as host-independent
//! code. Nothing here calls proxy-wasm; the filter in `src/` is a thin
//! adapter that implements [`host::Host`] over the host calls and forwards
//! Envoy's callbacks to [`filter::Worker`].
//!
//! Floors, from the bottom: `oauthv2info-names` (shared facts); [`xml`],
//! [`error`], [`regex`] (JavaRegex's matcher); [`policy`] (the XML model),
//! [`request`] (request variables), [`publish`] (patterns and encodings),
//! [`profile`] (token profiles and status rules), [`condition`] (Apigee's
//! condition language), [`cache`], [`feed`] (invalidation by the change
//! feed); [`plan`] and [`config`] (the compiled configuration); [`flow`]
//! (one request through the policies), [`catalog`] (what policies set, for
//! the checker and the docs); [`host`], [`metrics`], [`filter`] (the
//! per-worker driver).

pub mod cache;
pub mod catalog;
pub mod condition;
pub mod config;
pub mod error;
pub mod feed;
pub mod filter;
pub mod flow;
pub mod host;
pub mod metrics;
mod number;
pub mod plan;
pub mod policies;
pub mod profile;
pub mod protocol;
pub mod publish;
pub mod regex;
pub mod request;
pub mod xml;

pub use oauthv2info_names as names;
