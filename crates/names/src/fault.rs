//! The faults the policies raise: names, statuses, fault strings and the
//! JSON body of the local reply (docs/faults.md).

/// Declares the faults once: variant, fault name, HTTP status, fault string.
/// The reply body is built from the name and the fault string at compile
/// time, so a fault reply allocates nothing.
macro_rules! faults {
    ($($variant:ident => $name:literal, $status:literal, $faultstring:literal;)*) => {
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

            /// The local-reply body, exactly as docs/faults.md shows it.
            pub const fn body(self) -> &'static str {
                match self {
                    $(Fault::$variant => concat!(
                        r#"{"fault":{"faultstring":""#, $faultstring,
                        r#"","detail":{"errorcode":"keymanagement.service."#, $name, r#""}}}"#
                    ),)*
                }
            }
        }
    };
}

faults! {
    InvalidAccessToken => "invalid_access_token", 500, "Invalid Access Token";
    AccessTokenExpired => "access_token_expired", 500, "Access Token expired";
    InvalidRefreshToken => "invalid_refresh_token", 500, "Invalid Refresh Token";
    RefreshTokenExpired => "refresh_token_expired", 500, "Refresh Token expired";
    InvalidAuthorizationCode => "invalid_request-authorization_code_invalid", 500, "Invalid Authorization Code";
    AuthorizationCodeExpired => "authorization_code_expired", 500, "Authorization Code expired";
    InvalidClientId => "invalid_client-invalid_client_id", 500, "ClientId is Invalid";
    TokenServiceUnavailable => "token_service_unavailable", 503, "Token service unavailable";
}

impl Fault {
    /// The `errorcode` of the reply body: `keymanagement.service.` + name.
    pub fn errorcode(self) -> String {
        format!("keymanagement.service.{}", self.name())
    }

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
        assert_eq!(Fault::ALL.len(), 8);
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
