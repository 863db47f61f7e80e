//! Faults (SPEC 5): names, statuses, fault strings and the JSON reply body.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    InvalidAccessToken,
    AccessTokenExpired,
    InvalidRefreshToken,
    RefreshTokenExpired,
    InvalidAuthorizationCode,
    AuthorizationCodeExpired,
    InvalidClientId,
    TokenServiceUnavailable,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::InvalidAccessToken,
        Fault::AccessTokenExpired,
        Fault::InvalidRefreshToken,
        Fault::RefreshTokenExpired,
        Fault::InvalidAuthorizationCode,
        Fault::AuthorizationCodeExpired,
        Fault::InvalidClientId,
        Fault::TokenServiceUnavailable,
    ];

    /// The fault name, as `fault.name` holds it.
    pub fn name(self) -> &'static str {
        match self {
            Fault::InvalidAccessToken => "invalid_access_token",
            Fault::AccessTokenExpired => "access_token_expired",
            Fault::InvalidRefreshToken => "invalid_refresh_token",
            Fault::RefreshTokenExpired => "refresh_token_expired",
            Fault::InvalidAuthorizationCode => "invalid_request-authorization_code_invalid",
            Fault::AuthorizationCodeExpired => "authorization_code_expired",
            Fault::InvalidClientId => "invalid_client-invalid_client_id",
            Fault::TokenServiceUnavailable => "token_service_unavailable",
        }
    }

    pub fn status(self) -> u32 {
        match self {
            Fault::TokenServiceUnavailable => 503,
            _ => 500,
        }
    }

    pub fn faultstring(self) -> &'static str {
        match self {
            Fault::InvalidAccessToken => "Invalid Access Token",
            Fault::AccessTokenExpired => "Access Token expired",
            Fault::InvalidRefreshToken => "Invalid Refresh Token",
            Fault::RefreshTokenExpired => "Refresh Token expired",
            Fault::InvalidAuthorizationCode => "Invalid Authorization Code",
            Fault::AuthorizationCodeExpired => "Authorization Code expired",
            Fault::InvalidClientId => "ClientId is Invalid",
            Fault::TokenServiceUnavailable => "Token service unavailable",
        }
    }

    /// The local-reply body, exactly as SPEC 5 shows it.
    pub fn body(self) -> String {
        format!(
            r#"{{"fault":{{"faultstring":"{}","detail":{{"errorcode":"keymanagement.service.{}"}}}}}}"#,
            self.faultstring(),
            self.name()
        )
    }

    /// Parses a fault name (as the token service's `error` member gives it).
    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
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
            let v: serde_json::Value = serde_json::from_str(&f.body()).unwrap();
            assert_eq!(v["fault"]["faultstring"], f.faultstring());
            assert_eq!(
                v["fault"]["detail"]["errorcode"],
                format!("keymanagement.service.{}", f.name())
            );
            assert_eq!(Fault::from_name(f.name()), Some(f));
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(Fault::TokenServiceUnavailable.status(), 503);
        assert_eq!(Fault::InvalidClientId.status(), 500);
    }
}
