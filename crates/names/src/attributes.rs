//! The standard profile fields that SetOAuthV2Info may not write: the
//! filter refuses them at load time and the token service refuses them on
//! every merge (docs/variables.md#setoauthv2info).

/// Standard profile fields, compared case-insensitively; any name starting
/// with `refresh_token_` is protected too.
pub const PROTECTED_ATTRIBUTES: &[&str] = &[
    "scope",
    "status",
    "expires_in",
    "expires_at",
    "developer_email",
    "developer.email",
    "developer.id",
    "developer.app.name",
    "developer.app.id",
    "client_id",
    "org_name",
    "organization_name",
    "organization_id",
    "refresh_count",
    "access_token",
    "refresh_token",
    "issued_at",
    "token_type",
    "api_product_list",
    "application_name",
    "grant_type",
];

/// True when `name` is a standard profile field (or any `refresh_token_*`).
pub fn is_protected_attribute(name: &str) -> bool {
    let protected = |p: &str| {
        name.len() >= p.len() && name.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
    };
    protected("refresh_token_")
        || PROTECTED_ATTRIBUTES
            .iter()
            .any(|p| p.len() == name.len() && protected(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_names() {
        for n in [
            "scope",
            "SCOPE",
            "developer.email",
            "refresh_token_expires_in",
            "refresh_token_anything",
            "Refresh_Token_x",
            "grant_type",
        ] {
            assert!(is_protected_attribute(n), "{n}");
        }
        for n in ["department.id", "scopes", "refresh_tokens", "foo", "", "é"] {
            assert!(!is_protected_attribute(n), "{n}");
        }
    }
}
