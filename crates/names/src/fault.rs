//! The faults the policies raise: names, statuses, fault strings and the
//! JSON body of the local reply (docs/faults.md).

/// Declares the faults once: variant, fault name, HTTP status, fault string,
/// error code. The reply body is built from the fault string and the error
/// code at compile time, so a fault reply allocates nothing.
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
}

impl Fault {
    /// Parses a fault name (as the token service's `error` member gives it).
    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.iter().copied().find(|f| f.name() == name)
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
            assert_eq!(Fault::from_name(f.name()), Some(*f));
        }
        assert_eq!(Fault::ALL.len(), 9);
        // Every code is the filter's (keymanagement.service.<name>) but the
        // one modeled on another Apigee policy's.
        for f in Fault::ALL {
            if *f != Fault::UnresolvedVariable {
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
        for f in Fault::ALL {
            if *f != Fault::TokenServiceUnavailable {
                assert_eq!(f.status(), 500, "{f:?}");
            }
        }
    }
}
