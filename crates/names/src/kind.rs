//! What a GetOAuthV2Info looks up, and every fact that depends on it.

use crate::variables::{self, Field, Suffix};
use crate::Fault;

/// Which kind of token or id a policy looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    AccessToken,
    RefreshToken,
    AuthorizationCode,
    ClientId,
}

impl TokenKind {
    pub const ALL: [TokenKind; 4] = [
        TokenKind::AccessToken,
        TokenKind::RefreshToken,
        TokenKind::AuthorizationCode,
        TokenKind::ClientId,
    ];

    /// The XML element naming this kind in GetOAuthV2Info.
    pub const fn element(self) -> &'static str {
        match self {
            TokenKind::AccessToken => "AccessToken",
            TokenKind::RefreshToken => "RefreshToken",
            TokenKind::AuthorizationCode => "AuthorizationCode",
            TokenKind::ClientId => "ClientId",
        }
    }

    /// The kind an element names, if it names one.
    pub fn from_element(name: &str) -> Option<TokenKind> {
        TokenKind::ALL.into_iter().find(|k| k.element() == name)
    }

    /// The RFC 7662 `token_type_hint` the filter sends to the token service.
    pub const fn hint(self) -> &'static str {
        match self {
            TokenKind::AccessToken => "access_token",
            TokenKind::RefreshToken => "refresh_token",
            TokenKind::AuthorizationCode => "authorization_code",
            TokenKind::ClientId => "client_id",
        }
    }

    /// The kind a `token_type_hint` names.
    pub fn from_hint(hint: &str) -> Option<TokenKind> {
        TokenKind::ALL.into_iter().find(|k| k.hint() == hint)
    }

    /// A one-byte code (for binary encodings such as cache entries).
    pub const fn code(self) -> u8 {
        match self {
            TokenKind::AccessToken => 1,
            TokenKind::RefreshToken => 2,
            TokenKind::AuthorizationCode => 3,
            TokenKind::ClientId => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<TokenKind> {
        TokenKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The flow-variable prefix, before the policy name
    /// (docs/variables.md).
    pub const fn variable_prefix(self) -> &'static str {
        match self {
            TokenKind::AccessToken => variables::ACCESS_TOKEN_PREFIX,
            TokenKind::RefreshToken => "oauthv2refreshtoken",
            TokenKind::AuthorizationCode => "oauthv2authcode",
            TokenKind::ClientId => "oauthv2client",
        }
    }

    /// The standard variables a GetOAuthV2Info of this kind sets, in order.
    pub const fn suffixes(self) -> &'static [Suffix] {
        match self {
            TokenKind::AccessToken | TokenKind::RefreshToken => variables::TOKEN,
            TokenKind::AuthorizationCode => variables::AUTH_CODE,
            TokenKind::ClientId => variables::CLIENT,
        }
    }

    /// What goes between the policy name and a custom attribute's name:
    /// `oauthv2accesstoken.P.accesstoken.{name}`, `oauthv2authcode.P.{name}`.
    pub const fn attribute_prefix(self) -> &'static str {
        match self {
            TokenKind::AccessToken | TokenKind::RefreshToken => "accesstoken.",
            TokenKind::AuthorizationCode | TokenKind::ClientId => "",
        }
    }

    /// The profile field holding the looked-up value itself; when a
    /// profile omits it, the looked-up value is shown.
    pub const fn own_field(self) -> Field {
        match self {
            TokenKind::AccessToken => Field::AccessToken,
            TokenKind::RefreshToken => Field::RefreshToken,
            TokenKind::AuthorizationCode => Field::Code,
            TokenKind::ClientId => Field::ClientId,
        }
    }

    /// The field whose instant ends the looked-up value's life (a cache
    /// entry never outlives it); clients do not expire.
    pub const fn expiry_field(self) -> Option<Field> {
        match self {
            TokenKind::AccessToken | TokenKind::AuthorizationCode => Some(Field::ExpiresAt),
            TokenKind::RefreshToken => Some(Field::RefreshTokenExpiresAt),
            TokenKind::ClientId => None,
        }
    }

    /// The fault for an unknown (or unresolved, or empty) value.
    pub const fn invalid_fault(self) -> Fault {
        match self {
            TokenKind::AccessToken => Fault::InvalidAccessToken,
            TokenKind::RefreshToken => Fault::InvalidRefreshToken,
            TokenKind::AuthorizationCode => Fault::InvalidAuthorizationCode,
            TokenKind::ClientId => Fault::InvalidClientId,
        }
    }

    /// The fault for a value past its expiry; clients do not expire.
    pub const fn expired_fault(self) -> Option<Fault> {
        match self {
            TokenKind::AccessToken => Some(Fault::AccessTokenExpired),
            TokenKind::RefreshToken => Some(Fault::RefreshTokenExpired),
            TokenKind::AuthorizationCode => Some(Fault::AuthorizationCodeExpired),
            TokenKind::ClientId => None,
        }
    }

    /// A noun phrase for messages ("an access token").
    pub const fn noun(self) -> &'static str {
        match self {
            TokenKind::AccessToken => "an access token",
            TokenKind::RefreshToken => "a refresh token",
            TokenKind::AuthorizationCode => "an authorization code",
            TokenKind::ClientId => "a client id",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_hints_and_elements_round_trip() {
        for kind in TokenKind::ALL {
            assert_eq!(TokenKind::from_code(kind.code()), Some(kind));
            assert_eq!(TokenKind::from_hint(kind.hint()), Some(kind));
            assert_eq!(TokenKind::from_element(kind.element()), Some(kind));
            assert!(kind.invalid_fault().name().contains("invalid"));
            // The own field is one of the kind's variables.
            assert!(kind
                .suffixes()
                .iter()
                .any(|s| s.name == kind.own_field().name()));
        }
        assert_eq!(TokenKind::from_code(0), None);
        assert_eq!(TokenKind::from_element("Scope"), None);
    }
}
