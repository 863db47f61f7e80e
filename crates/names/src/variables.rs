//! Flow-variable names: the standard suffixes of each kind, where each value
//! comes from in a token profile, and the one function that builds a name
//! (docs/variables.md lists them all; tests hold the two together).

/// The prefix of access-token variables (GetOAuthV2Info on an access token,
/// and SetOAuthV2Info).
pub const ACCESS_TOKEN_PREFIX: &str = "oauthv2accesstoken";

/// Fault and status variables' prefix: `oauthV2.P.failed`.
pub const POLICY_PREFIX: &str = "oauthV2";

/// The fault name of the last policy that failed in this request.
pub const FAULT_NAME: &str = "fault.name";

/// A standard token-profile field, as the token service names it in its
/// `profile` answer (docs/token-service.md). Every standard variable takes
/// its value from one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    AccessToken,
    ClientId,
    Scope,
    Status,
    ExpiresAt,
    IssuedAt,
    TokenType,
    OrganizationName,
    ApiProductList,
    DeveloperId,
    DeveloperEmail,
    DeveloperAppName,
    DeveloperAppId,
    RefreshToken,
    RefreshTokenStatus,
    RefreshTokenExpiresAt,
    RefreshTokenIssuedAt,
    RefreshCount,
    Code,
    RedirectUri,
    ClientSecret,
    RedirectionUris,
    /// An API key's own status (the key lookup's; `approved`, `revoked`).
    KeyStatus,
    /// The app's developer's status (the key lookup's; `active`...).
    DeveloperStatus,
}

impl Field {
    /// Every field, in index order (`field as usize`).
    pub const ALL: [Field; 24] = [
        Field::AccessToken,
        Field::ClientId,
        Field::Scope,
        Field::Status,
        Field::ExpiresAt,
        Field::IssuedAt,
        Field::TokenType,
        Field::OrganizationName,
        Field::ApiProductList,
        Field::DeveloperId,
        Field::DeveloperEmail,
        Field::DeveloperAppName,
        Field::DeveloperAppId,
        Field::RefreshToken,
        Field::RefreshTokenStatus,
        Field::RefreshTokenExpiresAt,
        Field::RefreshTokenIssuedAt,
        Field::RefreshCount,
        Field::Code,
        Field::RedirectUri,
        Field::ClientSecret,
        Field::RedirectionUris,
        Field::KeyStatus,
        Field::DeveloperStatus,
    ];

    /// The field's name in the token service's `profile` object.
    pub const fn name(self) -> &'static str {
        match self {
            Field::AccessToken => "access_token",
            Field::ClientId => "client_id",
            Field::Scope => "scope",
            Field::Status => "status",
            Field::ExpiresAt => "expires_at",
            Field::IssuedAt => "issued_at",
            Field::TokenType => "token_type",
            Field::OrganizationName => "organization_name",
            Field::ApiProductList => "api_product_list",
            Field::DeveloperId => "developer.id",
            Field::DeveloperEmail => "developer.email",
            Field::DeveloperAppName => "developer.app.name",
            Field::DeveloperAppId => "developer.app.id",
            Field::RefreshToken => "refresh_token",
            Field::RefreshTokenStatus => "refresh_token_status",
            Field::RefreshTokenExpiresAt => "refresh_token_expires_at",
            Field::RefreshTokenIssuedAt => "refresh_token_issued_at",
            Field::RefreshCount => "refresh_count",
            Field::Code => "code",
            Field::RedirectUri => "redirect_uri",
            Field::ClientSecret => "client_secret",
            Field::RedirectionUris => "redirection_uris",
            Field::KeyStatus => "key_status",
            Field::DeveloperStatus => "developer.status",
        }
    }

    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Where a standard variable's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The field as stored (for the kind's own field, the looked-up value
    /// when the profile omits it).
    Field(Field),
    /// Whole seconds left until the field's instant (epoch ms): `0` once
    /// past, `-1` for a value that never expires.
    Remaining(Field),
    /// The stored status, shown as `expired` for an approved value past the
    /// second field's instant.
    Status(Field, Field),
    /// A part of the API product that allowed the call (the product check,
    /// docs/decisions.md#api-products); unset without one.
    Product(ProductPart),
}

/// What a [`Source::Product`] variable shows of the matching product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductPart {
    /// The product's name.
    Name,
    /// The matching operation's `resource` (the operation, as Apigee
    /// names it); unset without operation groups.
    Operation,
    /// The matching operation's resource.
    OperationResource,
    /// The matching operation's verbs, comma-separated.
    OperationMethods,
    /// The quota's `limit`, `interval`, `timeUnit`: the matching operation
    /// configuration's quota when it has one, else the product's
    /// (`quota`, `quotaInterval`, `quotaTimeUnit`); each unset when absent.
    QuotaLimit,
    QuotaInterval,
    QuotaTimeUnit,
}

impl ProductPart {
    /// True for the quota's settings.
    pub const fn is_quota(self) -> bool {
        matches!(
            self,
            ProductPart::QuotaLimit | ProductPart::QuotaInterval | ProductPart::QuotaTimeUnit
        )
    }
}

impl Source {
    /// True when the value depends on the clock (computed per request).
    pub const fn is_timed(self) -> bool {
        matches!(self, Source::Remaining(_) | Source::Status(..))
    }
}

/// One standard variable: the name after `prefix.P.`, whether it is a
/// secret (not published unless `export_secrets`), and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suffix {
    pub name: &'static str,
    pub secret: bool,
    pub source: Source,
}

const fn field(name: &'static str, f: Field) -> Suffix {
    Suffix {
        name,
        secret: false,
        source: Source::Field(f),
    }
}

const fn secret(name: &'static str, f: Field) -> Suffix {
    Suffix {
        name,
        secret: true,
        source: Source::Field(f),
    }
}

const STATUS: Suffix = Suffix {
    name: "status",
    secret: false,
    source: Source::Status(Field::Status, Field::ExpiresAt),
};
const EXPIRES_IN: Suffix = Suffix {
    name: "expires_in",
    secret: false,
    source: Source::Remaining(Field::ExpiresAt),
};
const REFRESH_TOKEN_STATUS: Suffix = Suffix {
    name: "refresh_token_status",
    secret: false,
    source: Source::Status(Field::RefreshTokenStatus, Field::RefreshTokenExpiresAt),
};
const REFRESH_TOKEN_EXPIRES_IN: Suffix = Suffix {
    name: "refresh_token_expires_in",
    secret: false,
    source: Source::Remaining(Field::RefreshTokenExpiresAt),
};

/// Access and refresh tokens (`oauthv2accesstoken.P.`, `oauthv2refreshtoken.P.`).
pub const TOKEN: &[Suffix] = &[
    secret("access_token", Field::AccessToken),
    field("client_id", Field::ClientId),
    field("scope", Field::Scope),
    STATUS,
    EXPIRES_IN,
    field("issued_at", Field::IssuedAt),
    field("token_type", Field::TokenType),
    field("organization_name", Field::OrganizationName),
    field("api_product_list", Field::ApiProductList),
    field("developer.id", Field::DeveloperId),
    field("developer.email", Field::DeveloperEmail),
    field("developer.app.name", Field::DeveloperAppName),
    field("developer.app.id", Field::DeveloperAppId),
    secret("refresh_token", Field::RefreshToken),
    REFRESH_TOKEN_STATUS,
    REFRESH_TOKEN_EXPIRES_IN,
    field("refresh_token_issued_at", Field::RefreshTokenIssuedAt),
    field("refresh_count", Field::RefreshCount),
];

/// Authorization codes (`oauthv2authcode.P.`).
pub const AUTH_CODE: &[Suffix] = &[
    secret("code", Field::Code),
    field("client_id", Field::ClientId),
    field("scope", Field::Scope),
    field("redirect_uri", Field::RedirectUri),
    STATUS,
    field("issued_at", Field::IssuedAt),
    EXPIRES_IN,
];

/// Clients, i.e. developer apps (`oauthv2client.P.`).
pub const CLIENT: &[Suffix] = &[
    field("client_id", Field::ClientId),
    secret("client_secret", Field::ClientSecret),
    field("redirection_uris", Field::RedirectionUris),
    field("developer.email", Field::DeveloperEmail),
    field("developer.id", Field::DeveloperId),
    field("developer.app.name", Field::DeveloperAppName),
];

/// OAuthV2 VerifyAccessToken's variables: full names, with no prefix
/// (`client_id`, `scope`...), as Apigee's OAuth flow-variables page lists
/// them for a token the policy verified: the access token's own variables,
/// the first 13 of [`TOKEN`] (no refresh-token ones).
pub const VERIFY: &[Suffix] = TOKEN.split_at(13).0;

const fn product(name: &'static str, part: ProductPart) -> Suffix {
    Suffix {
        name,
        secret: false,
        source: Source::Product(part),
    }
}

/// The API product that allowed the call (VerifyAccessToken's bare
/// `apiproduct.*`; VerifyAPIKey's after `verifyapikey.P.`), as Apigee's
/// flow-variables reference names them (docs/variables.md#api-products).
pub const PRODUCT: &[Suffix] = &[
    product("apiproduct.name", ProductPart::Name),
    product("apiproduct.operation", ProductPart::Operation),
    product(
        "apiproduct.operation.resource",
        ProductPart::OperationResource,
    ),
    product(
        "apiproduct.operation.methods",
        ProductPart::OperationMethods,
    ),
    product("apiproduct.developer.quota.limit", ProductPart::QuotaLimit),
    product(
        "apiproduct.developer.quota.interval",
        ProductPart::QuotaInterval,
    ),
    product(
        "apiproduct.developer.quota.timeunit",
        ProductPart::QuotaTimeUnit,
    ),
];

/// True when `rest` (after `apiproduct.`) names a standard product
/// variable ([`PRODUCT`], or an operation's: `operation...`): a product
/// attribute of that name is not set, the standard variable wins. Bytes,
/// compared without building a name (the publish walk asks it for every
/// product attribute).
#[inline]
pub fn is_standard_product_suffix(rest: &[u8]) -> bool {
    match rest.first() {
        Some(b'n') => rest == b"name",
        Some(b'o') => rest == b"operation" || rest.starts_with(b"operation."),
        Some(b'd') => matches!(
            rest,
            b"developer.quota.limit" | b"developer.quota.interval" | b"developer.quota.timeunit"
        ),
        _ => false,
    }
}
/// The segment of a product's custom attributes (`apiproduct.{name}`),
/// and of the matching operation configuration's
/// (`apiproduct.operation.attributes.{name}`).
pub const PRODUCT_ATTRIBUTE_SEGMENT: &str = "apiproduct.";
pub const OPERATION_ATTRIBUTE_SEGMENT: &str = "apiproduct.operation.attributes.";

/// VerifyAPIKey's prefix: `verifyapikey.P.`.
pub const VERIFY_API_KEY_PREFIX: &str = "verifyapikey";

/// VerifyAPIKey's variables from the key's lookup, after
/// `verifyapikey.P.` (the VerifyAPIKey page's list); the product's
/// ([`PRODUCT`]) follow, and the app's custom attributes as
/// `verifyapikey.P.app.{name}`.
pub const VERIFY_API_KEY: &[Suffix] = &[
    field("client_id", Field::ClientId),
    secret("client_secret", Field::ClientSecret),
    field("redirection_uris", Field::RedirectionUris),
    field("developer.app.name", Field::DeveloperAppName),
    field("developer.app.id", Field::DeveloperAppId),
    field("developer.id", Field::DeveloperId),
    field("developer.email", Field::DeveloperEmail),
    field("app.name", Field::DeveloperAppName),
    field("app.id", Field::DeveloperAppId),
];

/// What VerifyAPIKey also sets without a prefix, for a valid key (the
/// VerifyAPIKey page's "Analytics variables": `client_id`,
/// `developer.app.name`, `developer.id`, and `apiproduct.name`, which
/// [`VERIFY_API_KEY_BARE_PRODUCT`] sets): the same values as their
/// prefixed variables.
pub const VERIFY_API_KEY_BARE: &[Suffix] = &[
    field("client_id", Field::ClientId),
    field("developer.app.name", Field::DeveloperAppName),
    field("developer.id", Field::DeveloperId),
];

/// VerifyAPIKey's bare `apiproduct.name` (the product's variables end a
/// policy's list).
pub const VERIFY_API_KEY_BARE_PRODUCT: &[Suffix] = &[product("apiproduct.name", ProductPart::Name)];

/// What goes between `verifyapikey.P.` and an app's custom attribute.
pub const VERIFY_API_KEY_ATTRIBUTE_SEGMENT: &str = "app.";

/// The prefix of VerifyAccessToken's custom-attribute variables
/// (`accesstoken.{name}`).
pub const VERIFY_ATTRIBUTE_PREFIX: &str = "accesstoken.";

/// What SetOAuthV2Info sets from the updated profile, after
/// `oauthv2accesstoken.P.` (the SetOAuthV2Info page's list); custom
/// attributes follow with no prefix segment.
pub const SET: &[Suffix] = &[
    secret("access_token", Field::AccessToken),
    field("client_id", Field::ClientId),
    field("refresh_count", Field::RefreshCount),
    field("organization_name", Field::OrganizationName),
    EXPIRES_IN,
    REFRESH_TOKEN_EXPIRES_IN,
    field("issued_at", Field::IssuedAt),
    STATUS,
    field("api_product_list", Field::ApiProductList),
    field("token_type", Field::TokenType),
];

/// The one way a policy's variable is named: `prefix.policy.suffix`.
pub fn name(prefix: &str, policy: &str, suffix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + policy.len() + suffix.len() + 2);
    out.push_str(prefix);
    out.push('.');
    out.push_str(policy);
    out.push('.');
    out.push_str(suffix);
    out
}

/// `oauthV2.P.failed`: "true" or "false" after the policy ran.
pub fn failed(policy: &str) -> String {
    name(POLICY_PREFIX, policy, "failed")
}

/// `oauthV2.P.fault.name`.
pub fn fault_name(policy: &str) -> String {
    name(POLICY_PREFIX, policy, "fault.name")
}

/// `oauthV2.P.fault.cause`: the fault string.
pub fn fault_cause(policy: &str) -> String {
    name(POLICY_PREFIX, policy, "fault.cause")
}

/// The suffix of `variable` when it is `prefix.policy.suffix` with a
/// non-empty suffix (policy names may hold periods, so the policy is given).
pub fn suffix_of<'a>(variable: &'a str, prefix: &str, policy: &str) -> Option<&'a str> {
    variable
        .strip_prefix(prefix)?
        .strip_prefix('.')?
        .strip_prefix(policy)?
        .strip_prefix('.')
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {

    /// Every standard product variable's suffix is one, and an attribute
    /// name beside them is not.
    #[test]
    fn standard_product_suffixes_are_the_product_list() {
        for s in PRODUCT {
            let rest = s.name.strip_prefix(PRODUCT_ATTRIBUTE_SEGMENT).unwrap();
            assert!(super::is_standard_product_suffix(rest.as_bytes()), "{rest}");
        }
        for rest in [
            "tier",
            "developer.quota",
            "developer.quota.limits",
            "names",
            "",
        ] {
            assert!(
                !super::is_standard_product_suffix(rest.as_bytes()),
                "{rest}"
            );
        }
    }

    use super::*;

    #[test]
    fn verify_sets_the_access_token_variables_and_no_refresh_token_one() {
        let names: Vec<&str> = VERIFY.iter().map(|s| s.name).collect();
        assert_eq!(names.first(), Some(&"access_token"));
        assert_eq!(names.last(), Some(&"developer.app.id"));
        assert!(names.iter().all(|n| !n.starts_with("refresh")));
        assert_eq!(VERIFY.len(), 13);
    }

    #[test]
    fn names_are_built_and_taken_apart_alike() {
        let v = name(ACCESS_TOKEN_PREFIX, "Get.Info", "developer.email");
        assert_eq!(v, "oauthv2accesstoken.Get.Info.developer.email");
        assert_eq!(
            suffix_of(&v, ACCESS_TOKEN_PREFIX, "Get.Info"),
            Some("developer.email")
        );
        assert_eq!(
            suffix_of(&v, ACCESS_TOKEN_PREFIX, "Get"),
            Some("Info.developer.email")
        );
        assert_eq!(suffix_of(&v, ACCESS_TOKEN_PREFIX, "Other"), None);
        assert_eq!(
            suffix_of("oauthv2accesstoken.P.", ACCESS_TOKEN_PREFIX, "P"),
            None
        );
        assert_eq!(failed("P"), "oauthV2.P.failed");
        assert_eq!(fault_name("P"), "oauthV2.P.fault.name");
        assert_eq!(fault_cause("P"), "oauthV2.P.fault.cause");
    }

    #[test]
    fn fields_index_in_order() {
        for (i, f) in Field::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
            assert_eq!(Field::from_name(f.name()), Some(*f));
        }
    }

    #[test]
    fn suffix_lists_are_unique_and_timed_values_are_marked() {
        for list in [TOKEN, AUTH_CODE, CLIENT, SET, VERIFY_API_KEY, PRODUCT] {
            for (i, s) in list.iter().enumerate() {
                assert!(list[..i].iter().all(|o| o.name != s.name), "{}", s.name);
                assert_eq!(
                    s.source.is_timed(),
                    s.name.ends_with("expires_in") || s.name.ends_with("status"),
                    "{}",
                    s.name
                );
            }
        }
        let secrets: Vec<&str> = TOKEN.iter().filter(|s| s.secret).map(|s| s.name).collect();
        assert_eq!(secrets, ["access_token", "refresh_token"]);
    }
}
