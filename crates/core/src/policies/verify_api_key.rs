//! VerifyAPIKey: verifies the request's API key (an app's client id), its
//! app's, key's and developer's statuses, and that one of the app's API
//! products allows the call (docs/configuration.md#verifyapikey,
//! docs/decisions.md#verifyapikey).

use oauthv2info_names::variables::{self, Field};
use oauthv2info_names::{Fault, TokenKind};

use super::elements::{expect_leaf, validate_reference, Reader};
use super::{check_products, ApigeePolicy, CompileContext, Compiled, PolicyRun};
use crate::catalog::CatalogVar;
use crate::error::ConfigError;
use crate::plan::{ValueRef, VarRef};
use crate::profile::products::{ProductAt, ProductCheck};
use crate::profile::{Lookup, ProfileRef};

/// `<VerifyAPIKey>`, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifyApiKey {
    /// `<APIKey ref="...">`: the variable holding the key.
    pub(crate) key: String,
}

/// VerifyAPIKey, compiled: the `FailedToResolveAPIKey` fault string and
/// body, which name the ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifyKeyRun {
    unresolved_faultstring: String,
    unresolved_body: String,
}

impl ApigeePolicy for VerifyApiKey {
    const ROOT: &'static str = "VerifyAPIKey";
    const SHOWN: &'static str = "<VerifyAPIKey>";
    const ELEMENTS: &'static [&'static str] = &[
        "DisplayName",
        "APIKey",
        "Description",
        "Properties",
        "FaultRules",
    ];
    type Run = Box<VerifyKeyRun>;

    fn parse(reader: &mut Reader<'_>) -> Result<Self, ConfigError> {
        let Some(e) = reader.child("APIKey") else {
            return Err(reader.err(
                "<APIKey>",
                "is required in <VerifyAPIKey>: <APIKey ref=\"request.queryparam.apikey\"/>",
            ));
        };
        expect_leaf(e, &["ref"]).map_err(|p| reader.err("<APIKey>", p))?;
        if !e.text.trim().is_empty() {
            return Err(reader.err(
                "<APIKey>",
                "names its variable in the ref attribute: <APIKey ref=\"request.header.x-apikey\"/>, not as text",
            ));
        }
        let key = match e.attribute("ref").map(str::trim) {
            Some(r) if !r.is_empty() => r,
            _ => {
                return Err(reader.err(
                    "<APIKey>",
                    "needs a ref attribute naming the variable that holds the key",
                ))
            }
        };
        validate_reference(key).map_err(|p| reader.err("<APIKey>", p))?;
        Ok(VerifyApiKey {
            key: key.to_string(),
        })
    }

    fn references<'a>(&'a self, refs: &mut Vec<(String, &'a str)>) {
        refs.push(("<APIKey>".to_string(), self.key.as_str()));
    }

    fn compile(&self, at: &CompileContext<'_>) -> Compiled<Box<VerifyKeyRun>> {
        let unresolved_faultstring = format!(
            "{} {}",
            Fault::FailedToResolveApiKey.faultstring(),
            self.key
        );
        let unresolved_body = super::fault_body(
            &unresolved_faultstring,
            Fault::FailedToResolveApiKey.errorcode(),
        );
        // The prefixed variables, the bare ones (Apigee's analytics
        // variables), then the product's, bare and prefixed: the product's
        // end the list (`PolicyPlan::product_outputs`), the quota's last
        // (`PolicyPlan::quota_outputs`).
        let mut outputs = at.outputs(variables::VERIFY_API_KEY_PREFIX, variables::VERIFY_API_KEY);
        outputs.extend(at.bare_outputs(variables::VERIFY_API_KEY_BARE));
        outputs.extend(at.bare_outputs(variables::VERIFY_API_KEY_BARE_PRODUCT));
        outputs.extend(at.outputs(variables::VERIFY_API_KEY_PREFIX, variables::PRODUCT));
        Compiled {
            run: Box::new(VerifyKeyRun {
                unresolved_faultstring,
                unresolved_body,
            }),
            kind: TokenKind::ClientId,
            token: ValueRef {
                reference: Some(VarRef::resolve(&self.key, at.earlier)),
                literal: None,
            },
            outputs,
            attribute_prefix: format!(
                "{}.{}.{}",
                variables::VERIFY_API_KEY_PREFIX,
                at.name,
                variables::VERIFY_API_KEY_ATTRIBUTE_SEGMENT
            ),
            bare_attributes: false,
            known_attributes: Vec::new(),
        }
    }

    fn success_variables(&self, policy: &str, out: &mut Vec<CatalogVar>) {
        let prefix = variables::VERIFY_API_KEY_PREFIX;
        out.extend(
            variables::VERIFY_API_KEY
                .iter()
                .chain(variables::PRODUCT)
                .map(|s| CatalogVar::fixed(prefix, policy, s.name, s.secret)),
        );
        out.extend(
            variables::VERIFY_API_KEY_BARE
                .iter()
                .chain(variables::VERIFY_API_KEY_BARE_PRODUCT)
                .map(|s| CatalogVar::bare(s.name, s.secret)),
        );
        for segment in [
            variables::VERIFY_API_KEY_ATTRIBUTE_SEGMENT,
            variables::PRODUCT_ATTRIBUTE_SEGMENT,
            variables::OPERATION_ATTRIBUTE_SEGMENT,
        ] {
            out.push(CatalogVar::family(prefix, policy, segment));
        }
    }

    fn describe(&self) -> String {
        format!(
            "VerifyAPIKey: verifies the API key in {} (its app, key and developer approved or active, and an API product allowing the call)",
            self.key
        )
    }
}

impl PolicyRun for Box<VerifyKeyRun> {
    #[inline]
    fn variable_prefix(&self) -> Option<&'static str> {
        Some(variables::VERIFY_API_KEY_PREFIX)
    }

    #[inline]
    fn attribute_segment(&self) -> &'static str {
        variables::VERIFY_API_KEY_ATTRIBUTE_SEGMENT
    }

    fn faultstring(&self, fault: Fault) -> &str {
        if fault == Fault::FailedToResolveApiKey {
            &self.unresolved_faultstring
        } else {
            fault.faultstring()
        }
    }

    fn fault_body(&self, fault: Fault) -> std::borrow::Cow<'_, str> {
        if fault == Fault::FailedToResolveApiKey {
            std::borrow::Cow::Borrowed(&self.unresolved_body)
        } else {
            std::borrow::Cow::Owned(super::fault_body(fault.faultstring(), fault.errorcode()))
        }
    }

    /// No key (unset, or empty): `FailedToResolveAPIKey`.
    #[inline]
    fn missing_fault(&self, _kind: TokenKind) -> Fault {
        Fault::FailedToResolveApiKey
    }

    fn checks_products(&self) -> bool {
        true
    }

    fn bare_attribute_reads(&self) -> bool {
        true
    }

    /// The key's statuses alone (a key found earlier in the request by
    /// GetOAuthV2Info's `<ClientId>`): [`PolicyRun::verify`] is what runs.
    fn check(&self, _kind: TokenKind, lookup: Lookup<'_>, _now_ms: i64) -> Result<(), Fault> {
        key_status(lookup).map(|_| ())
    }

    /// A known key, approved, of an approved app of an active developer,
    /// that one of the app's API products allows for this call
    /// (docs/decisions.md#verifyapikey).
    #[inline(never)]
    fn verify(
        &self,
        _kind: TokenKind,
        lookup: Lookup<'_>,
        _now_ms: i64,
        check: &mut ProductCheck<'_>,
    ) -> Result<Option<ProductAt>, Fault> {
        let profile = key_status(lookup)?;
        check_products(&profile, check, Fault::InvalidApiKeyForGivenResource)
    }
}

/// The key's statuses, in the order Apigee's key management checks them:
/// the key, its app, the app's developer. A status the lookup does not
/// give (a plain RFC 7662 server) is not checked.
fn key_status(lookup: Lookup<'_>) -> Result<ProfileRef<'_>, Fault> {
    let Lookup::Known(profile) = lookup else {
        return Err(Fault::InvalidApiKey);
    };
    if !profile.active() {
        return Err(Fault::InvalidApiKey);
    }
    let is = |field: Field, want: &[u8]| {
        profile
            .field(field)
            .is_none_or(|s| s.eq_ignore_ascii_case(want))
    };
    if !is(Field::KeyStatus, b"approved") {
        return Err(Fault::ApiKeyNotApproved);
    }
    if !is(Field::Status, b"approved") {
        return Err(Fault::AppNotApproved);
    }
    if !is(Field::DeveloperStatus, b"active") {
        return Err(Fault::DeveloperStatusNotActive);
    }
    Ok(profile)
}
