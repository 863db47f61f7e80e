//! GetOAuthV2Info: looks up an access token, refresh token, authorization
//! code or client ID and sets its variables
//! (docs/configuration.md#policies-required, docs/variables.md).

use oauthv2info_names::{Fault, TokenKind};

use super::elements::{parse_bool, Reader, ValueSource};
use super::{ApigeePolicy, CompileContext, Compiled, PolicyRun};
use crate::catalog::CatalogVar;
use crate::error::ConfigError;
use crate::plan::ValueRef;
use crate::profile::{check_get, Lookup};

/// `<GetOAuthV2Info>`, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GetOAuthV2Info {
    pub(crate) kind: TokenKind,
    pub(crate) token: ValueSource,
    pub(crate) ignore_access_token_status: bool,
}

/// GetOAuthV2Info, compiled: what its run step needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GetRun {
    kind: TokenKind,
    ignore_access_token_status: bool,
}

impl ApigeePolicy for GetOAuthV2Info {
    const ROOT: &'static str = "GetOAuthV2Info";
    const SHOWN: &'static str = "<GetOAuthV2Info>";
    const ELEMENTS: &'static [&'static str] = &[
        "DisplayName",
        "AccessToken",
        "RefreshToken",
        "AuthorizationCode",
        "ClientId",
        "IgnoreAccessTokenStatus",
        "Description",
        "Properties",
        "FaultRules",
        "OAuthConfig",
    ];
    type Run = GetRun;

    fn misplaced(element: &str) -> Option<&'static str> {
        (element == "IgnoreUnresolvedVariables").then_some(
            "applies to <SetOAuthV2Info> only (Apigee documents it for no GetOAuthV2Info)",
        )
    }

    fn parse(reader: &mut Reader<'_>) -> Result<Self, ConfigError> {
        let tokens: Vec<(TokenKind, &crate::xml::Element)> = reader
            .root
            .children
            .iter()
            .filter_map(|c| TokenKind::from_element(&c.name).map(|k| (k, c)))
            .collect();
        let (kind, element) = match tokens.as_slice() {
            [one] => *one,
            [] => {
                return Err(reader.err(
                    "<GetOAuthV2Info>",
                    "needs exactly one of <AccessToken>, <RefreshToken>, <AuthorizationCode>, <ClientId>; found none",
                ))
            }
            many => {
                let names: Vec<String> =
                    many.iter().map(|(k, _)| format!("<{}>", k.element())).collect();
                return Err(reader.err(
                    "<GetOAuthV2Info>",
                    format!(
                        "needs exactly one of <AccessToken>, <RefreshToken>, <AuthorizationCode>, <ClientId>; found {}",
                        names.join(", ")
                    ),
                ));
            }
        };
        let element_name = format!("<{}>", kind.element());
        let token = reader.value_source(element, &element_name)?;

        let mut ignore_access_token_status = false;
        if let Some(ignore) = reader.child("IgnoreAccessTokenStatus") {
            let element = "<IgnoreAccessTokenStatus>";
            super::elements::expect_leaf(ignore, &[]).map_err(|p| reader.err(element, p))?;
            let text = ignore.text.trim();
            let value = parse_bool(text).ok_or_else(|| {
                reader.err(element, format!("must be true or false, not {text:?}"))
            })?;
            // Beside another kind (Apigee's schema has it at policy level for
            // every kind, and real bundles carry it beside <RefreshToken>):
            // accepted, and it changes nothing, as on Apigee, which returns
            // the other kinds regardless of their status already
            // (docs/decisions.md#getoauthv2info). Nothing is lost, so no
            // warning.
            ignore_access_token_status = kind == TokenKind::AccessToken && value;
        }
        Ok(GetOAuthV2Info {
            kind,
            token,
            ignore_access_token_status,
        })
    }

    fn references<'a>(&'a self, refs: &mut Vec<(String, &'a str)>) {
        if let Some(r) = &self.token.reference {
            refs.push((format!("<{}>", self.kind.element()), r.as_str()));
        }
    }

    fn compile(&self, at: &CompileContext<'_>) -> Compiled<GetRun> {
        let kind = self.kind;
        let prefix = kind.variable_prefix();
        Compiled {
            run: GetRun {
                kind,
                ignore_access_token_status: self.ignore_access_token_status,
            },
            kind,
            token: ValueRef::compile(&self.token, at.earlier),
            outputs: at.outputs(prefix, kind.suffixes()),
            attribute_prefix: format!("{prefix}.{}.{}", at.name, kind.attribute_prefix()),
            bare_attributes: kind.attribute_prefix().is_empty(),
            known_attributes: Vec::new(),
        }
    }

    fn success_variables(&self, policy: &str, out: &mut Vec<CatalogVar>) {
        let prefix = self.kind.variable_prefix();
        out.extend(
            self.kind
                .suffixes()
                .iter()
                .map(|s| CatalogVar::fixed(prefix, policy, s.name, s.secret)),
        );
        out.push(CatalogVar::family(
            prefix,
            policy,
            self.kind.attribute_prefix(),
        ));
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "looks up {} from {}",
            self.kind.noun(),
            self.token.describe(true)
        );
        if self.ignore_access_token_status {
            s.push_str("; IgnoreAccessTokenStatus: revoked and expired tokens are returned");
        }
        s
    }
}

impl PolicyRun for GetRun {
    #[inline]
    fn variable_prefix(&self) -> Option<&'static str> {
        Some(self.kind.variable_prefix())
    }

    #[inline]
    fn attribute_segment(&self) -> &'static str {
        self.kind.attribute_prefix()
    }

    /// The status rules of a lookup (docs/faults.md): the token must be
    /// approved and unexpired unless `<IgnoreAccessTokenStatus>`.
    #[inline]
    fn check(&self, kind: TokenKind, lookup: Lookup<'_>, now_ms: i64) -> Result<(), Fault> {
        check_get(kind, self.ignore_access_token_status, lookup, now_ms).map(|_| ())
    }
}
