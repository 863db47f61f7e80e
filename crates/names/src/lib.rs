//! The bottom floor of oauthv2info: facts that the filter's core, its
//! checker and the token service share, and nothing that depends on them.
//!
//! - [`Fault`]: the faults the policies raise, with their statuses, fault
//!   strings and reply bodies (docs/faults.md);
//! - [`TokenKind`]: what a GetOAuthV2Info looks up, with every per-kind fact
//!   as a method (its element, its introspection hint, its variable prefix,
//!   its own field, its expiry field, its faults, its variables);
//! - [`attributes`]: the standard profile fields SetOAuthV2Info may not
//!   write (docs/variables.md#setoauthv2info);
//! - [`product`]: Apigee's API-product rules (resource paths, operation
//!   groups: which product of an app allows a call);
//! - [`token_hash`]: the fingerprint the change feed names tokens by;
//! - [`variables`]: the suffix lists of each kind and the one function that
//!   builds a variable name (docs/variables.md).

pub mod attributes;
mod fault;
mod hash;
mod kind;
pub mod product;
pub mod variables;

pub use attributes::is_protected_attribute;
pub use fault::Fault;
pub use hash::{parse_token_hash, token_hash, token_hash_hex};
pub use kind::TokenKind;
