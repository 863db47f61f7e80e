//! OAuthV2 with `<Operation>VerifyAccessToken</Operation>`: verifies the
//! request's access token, and its scopes
//! (docs/configuration.md#verifyaccesstoken, docs/faults.md#verifyaccesstoken).

use std::ops::Range;

use oauthv2info_names::variables::{self, Field};
use oauthv2info_names::{Fault, TokenKind};

use super::elements::{expect_leaf, parse_bool, truncate, validate_reference, Reader};
use super::{check_products, ApigeePolicy, CompileContext, Compiled, PolicyRun};
use crate::catalog::{CatalogVar, When};
use crate::error::ConfigError;
use crate::plan::{ValueRef, VarRef};
use crate::profile::products::{ProductAt, ProductCheck};
use crate::profile::{check_get, Lookup, ProfileRef};
use crate::request::RequestVar;

/// `<OAuthV2>` with the VerifyAccessToken operation, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifyAccessToken {
    /// `<AccessToken>`: the variable holding the token (Apigee writes
    /// its name as the element's text); `None`: the `Authorization`
    /// header.
    pub(crate) token: Option<String>,
    /// `<AccessTokenPrefix>`: when not given, `Bearer` for the
    /// `Authorization` header and none for another variable; empty: none.
    pub(crate) prefix: String,
    /// `<Scope>`: the token must hold at least one of these.
    pub(crate) scopes: Vec<String>,
}

/// VerifyAccessToken's settings, compiled; boxed in the plan, so that
/// GetOAuthV2Info's plan stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifyRun {
    /// Stripped from the token's value (compared ignoring case, and
    /// followed by spaces); empty: the whole value is the token.
    prefix: String,
    /// `<Scope>`: any one of them will do; empty: no scope check.
    scopes: Vec<String>,
    /// The `InsufficientScope` fault string and reply body, naming the
    /// scopes.
    scope_faultstring: String,
    scope_body: String,
}

/// The OAuthV2 operations that issue, refresh or revoke tokens: the token
/// service does those (docs/token-service.md), not the filter.
const TOKEN_SERVICE_OPERATIONS: &[&str] = &[
    "GenerateAccessToken",
    "GenerateAccessTokenImplicitGrant",
    "GenerateAuthorizationCode",
    "RefreshAccessToken",
    "InvalidateToken",
    "ValidateToken",
    "GenerateJWTAccessToken",
    "GenerateJWTAccessTokenImplicitGrant",
    "RefreshJWTAccessToken",
];

/// The one line for an operation the token service does.
fn token_service_operation(op: &str) -> String {
    format!("{op} issues or changes tokens: the token service does that (docs/token-service.md); the filter runs VerifyAccessToken only")
}

impl ApigeePolicy for VerifyAccessToken {
    const ROOT: &'static str = "OAuthV2";
    const SHOWN: &'static str = "<OAuthV2> (VerifyAccessToken)";
    const ELEMENTS: &'static [&'static str] = &[
        "DisplayName",
        "Operation",
        "AccessToken",
        "AccessTokenPrefix",
        "Scope",
        "Description",
        "Properties",
        "FaultRules",
        // OAuthV2 elements of the operations that issue tokens: Apigee's
        // schema allows them on every operation, and the UI's templates carry
        // some; accepted and ignored (docs/decisions.md#verifyaccesstoken).
        "GenerateResponse",
        "GenerateErrorResponse",
        "ExternalAuthorization",
        "Tokens",
        "SupportedGrantTypes",
        "GrantType",
        "ExpiresIn",
        "RefreshTokenExpiresIn",
        "StoreToken",
        "ReuseRefreshToken",
        "Attributes",
        "ExternalAccessToken",
        "Code",
        "RedirectUri",
        "ResponseType",
        "State",
        "UserName",
        "PassWord",
        "AppEndUser",
        "ClientId",
        "RFCCompliantRequestResponse",
    ];
    type Run = Box<VerifyRun>;

    /// An operation that issues tokens is named before its elements
    /// (`<RefreshToken>`, `<ExternalAuthorizationCode>`, `<Algorithm>`...)
    /// would be "unknown" (docs/decisions.md#verifyaccesstoken).
    fn precheck(root: &crate::xml::Element) -> Option<(&'static str, String)> {
        let op = root.children.iter().find(|c| c.name == "Operation")?;
        let op = op.text.trim();
        TOKEN_SERVICE_OPERATIONS
            .contains(&op)
            .then(|| ("<Operation>", token_service_operation(op)))
    }

    fn parse(reader: &mut Reader<'_>) -> Result<Self, ConfigError> {
        match reader.leaf("Operation")? {
            Some("VerifyAccessToken") => {}
            Some(op) if TOKEN_SERVICE_OPERATIONS.contains(&op) => {
                return Err(reader.err("<Operation>", token_service_operation(op)))
            }
            Some(op) => {
                return Err(reader.err(
                    "<Operation>",
                    format!(
                        "unknown operation {:?}: the filter runs VerifyAccessToken",
                        truncate(op)
                    ),
                ))
            }
            None => {
                return Err(reader.err(
                    "<Operation>",
                    "is required in <OAuthV2>: <Operation>VerifyAccessToken</Operation>",
                ))
            }
        }
        let token = match reader.child("AccessToken") {
            None => None,
            Some(e) => {
                if e.attribute("ref").is_some() {
                    return Err(reader.err(
                        "<AccessToken>",
                        "in OAuthV2 the variable's name is the element's text: write <AccessToken>request.header.x-token</AccessToken>, not a ref attribute",
                    ));
                }
                expect_leaf(e, &[]).map_err(|p| reader.err("<AccessToken>", p))?;
                let name = e.text.trim();
                if name.is_empty() {
                    return Err(reader.err(
                        "<AccessToken>",
                        "names the variable holding the token, and is empty (leave it out to read the Authorization header)",
                    ));
                }
                validate_reference(name).map_err(|p| reader.err("<AccessToken>", p))?;
                Some(name.to_string())
            }
        };
        let prefix = match reader.leaf("AccessTokenPrefix")? {
            Some(p) if p.contains(char::is_whitespace) => {
                return Err(reader.err(
                    "<AccessTokenPrefix>",
                    format!(
                        "must be one word (an authentication scheme such as Bearer), not {:?}",
                        truncate(p)
                    ),
                ))
            }
            Some(p) => p.to_string(),
            // The Authorization header, by default or named: `Bearer`
            // stripped. A variable you name holds the bare token
            // (docs/decisions.md#verifyaccesstoken).
            None if token
                .as_deref()
                .is_none_or(|t| t.eq_ignore_ascii_case("request.header.authorization")) =>
            {
                "Bearer".to_string()
            }
            None => String::new(),
        };
        let scopes = reader
            .leaf("Scope")?
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect();
        match reader.leaf("ExternalAuthorization")? {
            Some(v) if parse_bool(v) == Some(true) => {
                return Err(reader.err(
                    "<ExternalAuthorization>",
                    "true would accept tokens the token service did not issue; VerifyAccessToken checks tokens against the token service only",
                ))
            }
            _ => {}
        }
        for e in &reader.root.children {
            let verify_own = matches!(
                e.name.as_str(),
                "DisplayName"
                    | "Operation"
                    | "AccessToken"
                    | "AccessTokenPrefix"
                    | "Scope"
                    | "Description"
                    | "Properties"
                    | "FaultRules"
            );
            let empty =
                e.children.is_empty() && e.text.trim().is_empty() && e.attributes.is_empty();
            if !(verify_own || empty) {
                reader.ignored.push((
                    format!("<{}>", e.name),
                    "the element (it belongs to the operations that issue tokens)".to_string(),
                ));
            }
        }
        Ok(VerifyAccessToken {
            token,
            prefix,
            scopes,
        })
    }

    fn references<'a>(&'a self, refs: &mut Vec<(String, &'a str)>) {
        if let Some(r) = &self.token {
            refs.push(("<AccessToken>".to_string(), r.as_str()));
        }
    }

    fn compile(&self, at: &CompileContext<'_>) -> Compiled<Box<VerifyRun>> {
        let scope_faultstring = format!("Required scope(s): {}", self.scopes.join(" "));
        let scope_body =
            super::fault_body(&scope_faultstring, Fault::InsufficientScope.errorcode());
        let reference = match &self.token {
            Some(variable) => VarRef::resolve(variable, at.earlier),
            // The whole Authorization header (not its first
            // comma-separated value).
            None => VarRef::Request(RequestVar::Header {
                name: "authorization".to_string(),
                named_index: None,
                whole: true,
            }),
        };
        Compiled {
            run: Box::new(VerifyRun {
                prefix: self.prefix.clone(),
                scopes: self.scopes.clone(),
                scope_faultstring,
                scope_body,
            }),
            kind: TokenKind::AccessToken,
            token: ValueRef {
                reference: Some(reference),
                literal: None,
            },
            // Its variables have no prefix.
            outputs: [variables::VERIFY, variables::PRODUCT]
                .into_iter()
                .flat_map(|list| at.bare_outputs(list))
                .collect(),
            attribute_prefix: variables::VERIFY_ATTRIBUTE_PREFIX.to_string(),
            bare_attributes: false,
            known_attributes: Vec::new(),
        }
    }

    fn success_variables(&self, _policy: &str, out: &mut Vec<CatalogVar>) {
        out.extend(
            variables::VERIFY
                .iter()
                .chain(variables::PRODUCT)
                .map(|s| CatalogVar::bare(s.name, s.secret)),
        );
        for prefix in [
            variables::VERIFY_ATTRIBUTE_PREFIX,
            variables::PRODUCT_ATTRIBUTE_SEGMENT,
            variables::OPERATION_ATTRIBUTE_SEGMENT,
        ] {
            out.push(CatalogVar {
                name: format!("{prefix}{{name}}"),
                when: When::Success,
                secret: false,
                family: true,
            });
        }
    }

    fn describe(&self) -> String {
        let from = match (&self.token, self.prefix.as_str()) {
            (None, "") => "the Authorization header".to_string(),
            (None, p) => format!("the Authorization header after {p:?}"),
            (Some(v), "") => format!("variable {v}"),
            (Some(v), p) => format!("variable {v} after {p:?}"),
        };
        let mut s = format!("VerifyAccessToken: verifies the access token from {from}");
        if !self.scopes.is_empty() {
            s.push_str(&format!(
                "; needs one of the scopes {} (else InsufficientScope, 403)",
                self.scopes.join(" ")
            ));
        }
        s
    }
}

impl PolicyRun for Box<VerifyRun> {
    fn variable_prefix(&self) -> Option<&'static str> {
        None
    }

    fn attribute_segment(&self) -> &'static str {
        variables::VERIFY_ATTRIBUTE_PREFIX
    }

    fn faultstring(&self, fault: Fault) -> &str {
        if fault == Fault::InsufficientScope {
            &self.scope_faultstring
        } else {
            fault.faultstring()
        }
    }

    fn fault_body(&self, fault: Fault) -> std::borrow::Cow<'_, str> {
        if fault == Fault::InsufficientScope {
            std::borrow::Cow::Borrowed(&self.scope_body)
        } else {
            std::borrow::Cow::Owned(super::fault_body(fault.faultstring(), fault.errorcode()))
        }
    }

    /// The token in `value` after the prefix: the prefix (any case), then
    /// one or more spaces or tabs, then the token; the whole value,
    /// trimmed, when the prefix is empty. `None`: no token
    /// (docs/faults.md#verifyaccesstoken).
    fn token_in(&self, value: &str, range: Range<usize>) -> Option<Range<usize>> {
        let prefix = self.prefix.as_str();
        let rest = if prefix.is_empty() {
            value
        } else {
            let head = value.get(..prefix.len())?;
            let rest = value.get(prefix.len()..)?;
            if !head.eq_ignore_ascii_case(prefix) || !rest.starts_with([' ', '\t']) {
                return None;
            }
            rest
        };
        let token = rest.trim_matches([' ', '\t']);
        if token.is_empty() {
            return None;
        }
        // The token's place inside the arena.
        let start = range.start + (token.as_ptr() as usize - value.as_ptr() as usize);
        Some(start..start + token.len())
    }

    fn missing_fault(&self, _kind: TokenKind) -> Fault {
        Fault::MissingAccessToken
    }

    fn checks_products(&self) -> bool {
        true
    }

    /// The status rules alone (a token found earlier in the request):
    /// no product check here; [`PolicyRun::verify`] is what runs.
    fn check(&self, kind: TokenKind, lookup: Lookup<'_>, now_ms: i64) -> Result<(), Fault> {
        let profile = self.status(lookup, now_ms)?;
        let _ = kind;
        self.scope(&profile)
    }

    /// An approved, unexpired token, that one of the app's API products
    /// allows for this call, holding one of the scopes (any, when there
    /// are none): Apigee's order, the key-management checks of the token
    /// (its `keymanagement.service.*` faults) before the policy's scope
    /// check (docs/decisions.md#api-products). Not inlined, so that
    /// GetOAuthV2Info's hit path stays small.
    #[inline(never)]
    fn verify(
        &self,
        _kind: TokenKind,
        lookup: Lookup<'_>,
        now_ms: i64,
        check: &mut ProductCheck<'_>,
    ) -> Result<Option<ProductAt>, Fault> {
        let profile = self.status(lookup, now_ms)?;
        let at = check_products(&profile, check, Fault::NoApiProductMatch)?;
        self.scope(&profile)?;
        Ok(at)
    }
}

impl VerifyRun {
    /// The token's status rules: the profile, or the fault.
    #[inline]
    fn status<'a>(&self, lookup: Lookup<'a>, now_ms: i64) -> Result<ProfileRef<'a>, Fault> {
        // Revoked (a stored status other than approved) is a fault of its
        // own here, checked before expiry as GetOAuthV2Info checks it.
        if let Lookup::Known(profile) = &lookup {
            if profile
                .field(Field::Status)
                .is_some_and(|s| !s.eq_ignore_ascii_case(b"approved"))
            {
                return Err(Fault::AccessTokenNotApproved);
            }
        }
        check_get(TokenKind::AccessToken, false, lookup, now_ms).map_err(Fault::for_verify)
    }

    /// `<Scope>`: the token holds one of them (any, when none is given).
    #[inline]
    fn scope(&self, profile: &ProfileRef<'_>) -> Result<(), Fault> {
        let held = profile.field(Field::Scope).unwrap_or_default();
        let holds = |scope: &String| {
            held.split(|b| b.is_ascii_whitespace())
                .any(|s| s == scope.as_bytes())
        };
        if !self.scopes.is_empty() && !self.scopes.iter().any(holds) {
            return Err(Fault::InsufficientScope);
        }
        Ok(())
    }
}
