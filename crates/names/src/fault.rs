//! The faults the policies raise: names, statuses, fault strings and the
//! JSON body of the local reply (docs/faults.md).

/// Declares the faults once: variant, fault name, HTTP status, fault string,
/// error code. [`Fault::body`] is the reply body built from the fault string
/// and the error code at compile time, for the docs' and the tests' checks;
/// the filter builds the same text on its fault path (its `.wasm` keeps one
/// copy of each string, not two; a unit test holds the two equal).
macro_rules! faults {
    ($($variant:ident => $name:literal, $status:literal, $faultstring:literal, $errorcode:literal;)*) => {
        /// A fault a policy raises (docs/faults.md).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Fault {
            $($variant,)*
        }

        impl Fault {
            /// Every fault, in the order docs/faults.md lists them.
            pub const ALL: &'static [Fault] = &[$(Fault::$variant,)*];

            /// The fault name, as `fault.name` holds it.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Fault::$variant => $name,)*
                }
            }

            /// The HTTP status of the local reply.
            pub const fn status(self) -> u32 {
                match self {
                    $(Fault::$variant => $status,)*
                }
            }

            /// The human-readable fault string (`oauthV2.P.fault.cause`).
            pub const fn faultstring(self) -> &'static str {
                match self {
                    $(Fault::$variant => $faultstring,)*
                }
            }

            /// The `errorcode` of the reply body.
            pub const fn errorcode(self) -> &'static str {
                match self {
                    $(Fault::$variant => $errorcode,)*
                }
            }

            /// The local-reply body, exactly as docs/faults.md shows it.
            pub const fn body(self) -> &'static str {
                match self {
                    $(Fault::$variant => concat!(
                        r#"{"fault":{"faultstring":""#, $faultstring,
                        r#"","detail":{"errorcode":""#, $errorcode, r#""}}}"#
                    ),)*
                }
            }
        }
    };
}

faults! {
    InvalidAccessToken => "invalid_access_token", 500, "Invalid Access Token", "keymanagement.service.invalid_access_token";
    AccessTokenExpired => "access_token_expired", 500, "Access Token expired", "keymanagement.service.access_token_expired";
    InvalidRefreshToken => "invalid_refresh_token", 500, "Invalid Refresh Token", "keymanagement.service.invalid_refresh_token";
    RefreshTokenExpired => "refresh_token_expired", 500, "Refresh Token expired", "keymanagement.service.refresh_token_expired";
    InvalidAuthorizationCode => "invalid_request-authorization_code_invalid", 500, "Invalid Authorization Code", "keymanagement.service.invalid_request-authorization_code_invalid";
    AuthorizationCodeExpired => "authorization_code_expired", 500, "Authorization Code expired", "keymanagement.service.authorization_code_expired";
    InvalidClientId => "invalid_client-invalid_client_id", 500, "ClientId is Invalid", "keymanagement.service.invalid_client-invalid_client_id";
    // SetOAuthV2Info with <IgnoreUnresolvedVariables>false: a ref that
    // resolves to nothing (named as Apigee's AssignMessage names its own).
    UnresolvedVariable => "UnresolvedVariable", 500, "Unable to resolve variable", "steps.oauth.v2.UnresolvedVariable";
    TokenServiceUnavailable => "token_service_unavailable", 503, "Token service unavailable", "keymanagement.service.token_service_unavailable";
    // OAuthV2 VerifyAccessToken: Apigee answers its faults with 401 and
    // 403, and names the missing-token case apart from the bad token.
    MissingAccessToken => "InvalidAccessToken", 401, "Invalid access token", "oauth.v2.InvalidAccessToken";
    VerifyInvalidAccessToken => "invalid_access_token", 401, "Invalid Access Token", "keymanagement.service.invalid_access_token";
    VerifyAccessTokenExpired => "access_token_expired", 401, "Access Token expired", "keymanagement.service.access_token_expired";
    // A revoked token: Apigee's reply as clients record it
    // (docs/decisions.md#verifyaccesstoken).
    AccessTokenNotApproved => "access_token_not_approved", 401, "Access Token not approved", "keymanagement.service.access_token_not_approved";
    // The fault string names the policy's scopes: the policy's plan holds
    // it and the body ("Required scope(s): A B"); these are the fallbacks.
    InsufficientScope => "InsufficientScope", 403, "Required scope(s)", "steps.oauth.v2.InsufficientScope";
    // The API-product check (docs/decisions.md#api-products): no product
    // of the app allows this proxy, path and verb.
    NoApiProductMatch => "InvalidAPICallAsNoApiProductMatchFound", 401, "Invalid API call as no apiproduct match found", "keymanagement.service.InvalidAPICallAsNoApiProductMatchFound";
    // VerifyAPIKey (docs/decisions.md#verifyapikey). The fault string of
    // FailedToResolveAPIKey names the policy's ref: its plan holds it.
    FailedToResolveApiKey => "FailedToResolveAPIKey", 401, "Failed to resolve API Key variable", "steps.oauth.v2.FailedToResolveAPIKey";
    InvalidApiKey => "InvalidApiKey", 401, "Invalid ApiKey", "oauth.v2.InvalidApiKey";
    ApiKeyNotApproved => "ApiKeyNotApproved", 401, "ApiKey not approved", "oauth.v2.ApiKeyNotApproved";
    AppNotApproved => "invalid_client-app_not_approved", 401, "App not Approved", "keymanagement.service.invalid_client-app_not_approved";
    DeveloperStatusNotActive => "DeveloperStatusNotActive", 401, "Developer Status not in Active state", "keymanagement.service.DeveloperStatusNotActive";
    InvalidApiKeyForGivenResource => "InvalidApiKeyForGivenResource", 401, "Invalid ApiKey for given resource", "oauth.v2.InvalidApiKeyForGivenResource";
    // RaiseFault: its plan holds the fault string that names the policy
    // ("Raising fault. Fault name : P"); this is the fallback.
    RaiseFault => "RaiseFault", 500, "Raising fault", "steps.raisefault.RaiseFault";
}

impl Fault {
    /// Parses a fault name (as the token service's `error` member gives it):
    /// GetOAuthV2Info's and SetOAuthV2Info's fault of that name.
    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// VerifyAccessToken's fault for what a lookup found (the other
    /// policies' fault of the same name, with VerifyAccessToken's status).
    pub const fn for_verify(self) -> Fault {
        match self {
            Fault::InvalidAccessToken => Fault::VerifyInvalidAccessToken,
            Fault::AccessTokenExpired => Fault::VerifyAccessTokenExpired,
            other => other,
        }
    }

    /// The `WWW-Authenticate` header of a VerifyAccessToken fault reply
    /// (RFC 6750 section 3; Apigee sends one on its 401 replies).
    pub const fn www_authenticate(self) -> Option<&'static str> {
        Some(match self {
            Fault::MissingAccessToken => "Bearer realm=\"null\",error=\"invalid_token\",error_description=\"oauth.v2.InvalidAccessToken: Invalid access token\"",
            Fault::VerifyInvalidAccessToken => "Bearer realm=\"null\",error=\"invalid_token\",error_description=\"keymanagement.service.invalid_access_token: Invalid Access Token\"",
            Fault::VerifyAccessTokenExpired => "Bearer realm=\"null\",error=\"invalid_token\",error_description=\"keymanagement.service.access_token_expired: Access Token expired\"",
            Fault::AccessTokenNotApproved => "Bearer realm=\"null\",error=\"invalid_token\",error_description=\"keymanagement.service.access_token_not_approved: Access Token not approved\"",
            Fault::InsufficientScope => "Bearer realm=\"null\",error=\"insufficient_scope\",error_description=\"steps.oauth.v2.InsufficientScope: Required scope(s)\"",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_documented_json() {
        assert_eq!(
            Fault::InvalidAccessToken.body(),
            r#"{"fault":{"faultstring":"Invalid Access Token","detail":{"errorcode":"keymanagement.service.invalid_access_token"}}}"#
        );
        for f in Fault::ALL {
            let expected = format!(
                r#"{{"fault":{{"faultstring":"{}","detail":{{"errorcode":"{}"}}}}}}"#,
                f.faultstring(),
                f.errorcode()
            );
            assert_eq!(f.body(), expected);
            // A name is the Get/Set fault's; VerifyAccessToken's own
            // faults of the same name map to it.
            let named = Fault::from_name(f.name()).unwrap();
            assert!(named == *f || named.for_verify() == *f, "{f:?}");
        }
        assert_eq!(Fault::ALL.len(), 22);
        // Every code is the filter's (keymanagement.service.<name>) but the
        // ones modeled on other Apigee policies'.
        for f in Fault::ALL {
            if !matches!(
                f,
                Fault::UnresolvedVariable
                    | Fault::MissingAccessToken
                    | Fault::InsufficientScope
                    | Fault::RaiseFault
                    | Fault::NoApiProductMatch
                    | Fault::FailedToResolveApiKey
                    | Fault::InvalidApiKey
                    | Fault::ApiKeyNotApproved
                    | Fault::AppNotApproved
                    | Fault::DeveloperStatusNotActive
                    | Fault::InvalidApiKeyForGivenResource
            ) {
                assert_eq!(f.errorcode(), format!("keymanagement.service.{}", f.name()));
            }
        }
        assert_eq!(
            Fault::UnresolvedVariable.body(),
            r#"{"fault":{"faultstring":"Unable to resolve variable","detail":{"errorcode":"steps.oauth.v2.UnresolvedVariable"}}}"#
        );
        assert_eq!(Fault::from_name("nope"), None);
    }

    #[test]
    fn statuses() {
        assert_eq!(Fault::TokenServiceUnavailable.status(), 503);
        assert_eq!(Fault::InsufficientScope.status(), 403);
        for f in Fault::ALL {
            let verify = f.www_authenticate().is_some();
            match f {
                Fault::TokenServiceUnavailable | Fault::InsufficientScope => {}
                _ if verify => assert_eq!(f.status(), 401, "{f:?}"),
                // The product check's and VerifyAPIKey's: 401, with no
                // WWW-Authenticate (they are no bearer-token errors).
                Fault::NoApiProductMatch
                | Fault::FailedToResolveApiKey
                | Fault::InvalidApiKey
                | Fault::ApiKeyNotApproved
                | Fault::AppNotApproved
                | Fault::DeveloperStatusNotActive
                | Fault::InvalidApiKeyForGivenResource => assert_eq!(f.status(), 401, "{f:?}"),
                _ => assert_eq!(f.status(), 500, "{f:?}"),
            }
            if let Some(h) = f.www_authenticate() {
                assert!(h.contains(f.errorcode()), "{h}");
            }
        }
        assert_eq!(
            Fault::MissingAccessToken.body(),
            r#"{"fault":{"faultstring":"Invalid access token","detail":{"errorcode":"oauth.v2.InvalidAccessToken"}}}"#
        );
    }
}
